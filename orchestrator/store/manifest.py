"""Store manifests (v2): what a program or a CP image is, and for a program how to launch it.

Two kinds, both strict (every field required, unknown fields refused, so a damaged manifest
never falls back to a default) and frozen:

- ``ProgramManifest`` (kind "program"): a DP program file (name, version, sha256, size) and its
  ``Launch``: which runtime runs it, the form of its core argument, and which of the agent's
  named values it takes under which flag. There is no free argv: a runtime is a NAME the host
  maps to a path through its own allow-list, option and flag names come from fixed sets, and
  flags match ``FLAG``. A manifest can choose among the things the agent knows how to pass,
  never make the agent (root) run something else.
- ``ImageManifest`` (kind "image"): a CP guest image, its kernel and initramfs. Hosts hand them to
  QEMU; they are never executed on the host.

What the store keeps and serves is a signed envelope::

    {"manifest": {"kind": "program", "name": "dpdk_stub", "version": "1.0.0-3f2a9c1e",
                  "sha256": "<64 hex>", "size": 31337, "created": "2026-11-24T03:15:00Z",
                  "launch": {"runtime": "python3", "cores": "mask",
                             "options": {"iface": "--iface", "ip": "--ip", ...},
                             "flags": {"standby": "--standby"}}},
     "signature": {"alg": "ed25519", "key_id": "<16 hex>", "value": "<base64>"}}

``open_envelope`` verifies the signature before it reads a single field of the manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from orchestrator.store import signing
from orchestrator.store.errors import IntegrityError, StoreError

# NOTE: the first character may not be '.', so no name or version can be '.' or '..': both
# become path components in the store and URL components on the wire.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA = re.compile(r"^[0-9a-f]{64}$")
FLAG = re.compile(r"^--[a-z][a-z0-9-]{0,31}$")
# NOTE: a runtime is a name ("python3"), never a path: no '/' can pass this.
RUNTIME = re.compile(r"^[a-z][a-z0-9._+-]{0,31}$")
NATIVE = "native"
CORE_FORMS = ("mask", "list", "lcores")
OPTION_NAMES = ("iface", "ip", "mac", "policy_shm", "stats", "name", "port", "idle")
FLAG_NAMES = ("standby",)
# Command lines the agent owns for programs that take none of its options (see
# ``orchestrator.agent.launch.PRESETS``): a manifest names one, never the words themselves.
PRESET_NAMES = ("testpmd-5tswap",)
KINDS = ("program", "image")
IMAGE_FILES = ("kernel", "initrd")
ENVELOPE_FIELDS = ("manifest", "signature")


def check_ref(name: str, version: str, kind: str = "program") -> None:
    """StoreError unless ``name`` and ``version`` are safe as path and URL components."""
    for what, value in (("name", name), ("version", version)):
        if not isinstance(value, str) or not NAME.match(value):
            raise StoreError(f"{kind} {what} {value!r}: use letters, digits, '.', '_' and '-' "
                             f"(not starting with '.'), at most 64")


def check_sha(sha: str) -> None:
    if not isinstance(sha, str) or not SHA.match(sha):
        raise StoreError(f"sha256 {sha!r} is not 64 lowercase hex digits")


def _check_size(size, what: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise StoreError(f"{what}: bad size {size!r}")


def _strict(doc, fields: tuple[str, ...], what: str) -> dict:
    if not isinstance(doc, dict):
        raise StoreError(f"{what} must be a JSON object")
    missing = [f for f in fields if f not in doc]
    extra = sorted(str(k)[:32] for k in set(doc) - set(fields))
    if missing or extra:
        raise StoreError(f"{what}: " + "; ".join(x for x in (missing and f"missing {', '.join(missing)}",
                                                             extra and f"unknown {', '.join(extra)}") if x))
    return doc


def _named_flags(value, allowed: tuple[str, ...], what: str) -> tuple[tuple[str, str], ...]:
    """A {name: flag} mapping (or its pairs) as pairs in the order of ``allowed``.

    NOTE: the schema's order, not the document's: a signature covers the manifest with its keys
    sorted, so the order keys happen to have in a file is not signed and must not matter."""
    pairs = value.items() if isinstance(value, dict) else value
    try:
        got = dict(pairs)
    except (TypeError, ValueError):
        raise StoreError(f"{what} must map names to flags") from None
    for name, flag in got.items():
        if name not in allowed:
            raise StoreError(f"{what}: unknown name {str(name)[:32]!r} (known: {', '.join(allowed)})")
        if not isinstance(flag, str) or not FLAG.match(flag):
            raise StoreError(f"{what}: flag {str(flag)[:40]!r} for {name} is not of the form --lowercase-word")
    return tuple((n, got[n]) for n in allowed if n in got)


@dataclass(frozen=True)
class Launch:
    """How the agent launches a program: ``runtime`` ("native", or an interpreter name the host
    maps to a path), ``cores`` ("mask" → ``-c 0x0000ff00``, "list" → ``-l 1,3-4``, "lcores" →
    DPDK's ``--lcores=0@1,1@1,2@3``), ``options`` and ``flags`` as ((name, flag), ...) in the
    schema's order (a mapping is accepted), and ``preset``: the name of a command line the agent
    owns (``PRESET_NAMES``) for a program that takes none of the agent's options, a stock DPDK
    application. A preset program is native and has no options or flags of its own: the agent
    gives it its own interface, claims its IP (ARP) for it and reads its counters.
    See ``orchestrator.agent.launch.dp_argv`` for the command line this makes.

    ``preset`` is optional in the JSON (absent: none), so manifests signed before it existed
    keep their exact content and signature."""

    runtime: str = "python3"
    cores: str = "mask"
    options: tuple[tuple[str, str], ...] = ()
    flags: tuple[tuple[str, str], ...] = ()
    preset: str | None = None

    FIELDS: ClassVar[tuple[str, ...]] = ("runtime", "cores", "options", "flags")
    OPTIONAL: ClassVar[tuple[str, ...]] = ("preset",)

    def __post_init__(self):
        if not isinstance(self.runtime, str) or not (self.runtime == NATIVE or RUNTIME.match(self.runtime)):
            raise StoreError(f"launch runtime {str(self.runtime)[:40]!r}: use 'native' or an interpreter name "
                             f"such as 'python3' (never a path)")
        if self.cores not in CORE_FORMS:
            raise StoreError(f"launch cores {str(self.cores)[:40]!r}: use {', '.join(CORE_FORMS)}")
        object.__setattr__(self, "options", _named_flags(self.options, OPTION_NAMES, "launch options"))
        object.__setattr__(self, "flags", _named_flags(self.flags, FLAG_NAMES, "launch flags"))
        used = [f for _, f in self.options + self.flags]
        dup = sorted({f for f in used if used.count(f) > 1})
        if dup:
            raise StoreError(f"launch: flag {', '.join(dup)} is used for more than one name")
        if self.preset is not None:
            if self.preset not in PRESET_NAMES:
                raise StoreError(f"launch preset {str(self.preset)[:40]!r}: known presets are "
                                 f"{', '.join(PRESET_NAMES)}")
            if self.runtime != NATIVE or self.options or self.flags:
                raise StoreError(f"launch preset {self.preset}: the program must be native with no options or "
                                 f"flags of its own (the preset is its whole command line)")

    def to_dict(self) -> dict:
        d = {"runtime": self.runtime, "cores": self.cores, "options": dict(self.options), "flags": dict(self.flags)}
        if self.preset is not None:
            d["preset"] = self.preset
        return d

    @classmethod
    def from_dict(cls, doc) -> "Launch":
        if isinstance(doc, dict) and "preset" in doc:
            d = _strict(doc, cls.FIELDS + cls.OPTIONAL, "launch")
        else:
            d = _strict(doc, cls.FIELDS, "launch")
        for f in ("options", "flags"):
            if not isinstance(d[f], dict):
                raise StoreError(f"launch {f} must be a JSON object")
        return cls(**{f: d[f] for f in cls.FIELDS + cls.OPTIONAL if f in d})

    @property
    def takes_policy(self) -> bool:
        """Does the program read the CP's policy table (the agent's shared memory)?"""
        return any(name == "policy_shm" for name, _ in self.options)


# The launch of this repo's DP, dpdk_stub (see dpdk_stub/eal.py for its arguments).
DEFAULT_LAUNCH = Launch("python3", "mask",
                        options={"iface": "--iface", "ip": "--ip", "mac": "--mac", "policy_shm": "--policy-shm",
                                 "stats": "--stats", "name": "--name", "idle": "--idle"},
                        flags={"standby": "--standby"})


def _check_created(created, what: str) -> None:
    if not isinstance(created, str) or len(created) > 64 or "\n" in created:
        raise StoreError(f"{what}: created must be a short string")


@dataclass(frozen=True)
class ProgramManifest:
    name: str
    version: str
    sha256: str
    size: int
    created: str = ""
    launch: Launch = DEFAULT_LAUNCH

    kind: ClassVar[str] = "program"
    FIELDS: ClassVar[tuple[str, ...]] = ("kind", "name", "version", "sha256", "size", "created", "launch")

    def __post_init__(self):
        check_ref(self.name, self.version, self.kind)
        try:
            check_sha(self.sha256)
        except StoreError as exc:
            raise StoreError(f"program {self.ref}: {exc}") from None
        _check_size(self.size, f"program {self.ref}")
        _check_created(self.created, f"program {self.ref}")
        if not isinstance(self.launch, Launch):
            raise StoreError(f"program {self.ref}: launch must be a Launch")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "version": self.version, "sha256": self.sha256,
                "size": self.size, "created": self.created, "launch": self.launch.to_dict()}

    @classmethod
    def from_dict(cls, doc) -> "ProgramManifest":
        d = _strict(doc, cls.FIELDS, f"program manifest {_claimed(doc)}")
        if d["kind"] != cls.kind:
            raise StoreError(f"manifest {_claimed(d)} is of kind {str(d['kind'])[:16]!r}, not {cls.kind!r}")
        try:
            launch = Launch.from_dict(d["launch"])
        except StoreError as exc:
            raise StoreError(f"program {_claimed(d)}: {exc}") from None
        return cls(d["name"], d["version"], d["sha256"], d["size"], d["created"], launch)


@dataclass(frozen=True)
class BlobRef:
    """One content-addressed file of a manifest."""

    sha256: str
    size: int

    def __post_init__(self):
        check_sha(self.sha256)
        _check_size(self.size, f"file {self.sha256[:12]}")

    def to_dict(self) -> dict:
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class ImageManifest:
    """A CP guest image: ``files`` is {"kernel": BlobRef, "initrd": BlobRef} (the JSON has exactly
    those two, each {"sha256", "size"})."""

    name: str
    version: str
    created: str
    kernel: BlobRef
    initrd: BlobRef

    kind: ClassVar[str] = "image"
    FIELDS: ClassVar[tuple[str, ...]] = ("kind", "name", "version", "created", "files")

    def __post_init__(self):
        check_ref(self.name, self.version, self.kind)
        _check_created(self.created, f"image {self.ref}")
        if not (isinstance(self.kernel, BlobRef) and isinstance(self.initrd, BlobRef)):
            raise StoreError(f"image {self.ref}: kernel and initrd must be BlobRefs")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def files(self) -> dict[str, BlobRef]:
        return {"kernel": self.kernel, "initrd": self.initrd}

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "version": self.version, "created": self.created,
                "files": {role: ref.to_dict() for role, ref in self.files.items()}}

    @classmethod
    def from_dict(cls, doc) -> "ImageManifest":
        d = _strict(doc, cls.FIELDS, f"image manifest {_claimed(doc)}")
        if d["kind"] != cls.kind:
            raise StoreError(f"manifest {_claimed(d)} is of kind {str(d['kind'])[:16]!r}, not {cls.kind!r}")
        what = f"image {_claimed(d)}"
        files = _strict(d["files"], IMAGE_FILES, f"{what} files")
        refs = {}
        for role in IMAGE_FILES:
            f = _strict(files[role], ("sha256", "size"), f"{what} {role}")
            try:
                refs[role] = BlobRef(f["sha256"], f["size"])
            except StoreError as exc:
                raise StoreError(f"{what} {role}: {exc}") from None
        return cls(d["name"], d["version"], d["created"], refs["kernel"], refs["initrd"])


AnyManifest = ProgramManifest | ImageManifest
_CLASSES = {"program": ProgramManifest, "image": ImageManifest}


def content(manifest: AnyManifest) -> dict:
    """What makes a version what it is: everything but ``created``."""
    d = manifest.to_dict()
    d.pop("created")
    return d


def _claimed(doc) -> str:
    """name@version as a document claims it, safe for a one-line message even if it is not."""
    if not isinstance(doc, dict):
        return "(not an object)"
    parts = [doc.get("name"), doc.get("version")]
    return "@".join(p if isinstance(p, str) and NAME.match(p) else repr(p)[:40] for p in parts)


def _kind_class(kind: str):
    try:
        return _CLASSES[kind]
    except KeyError:
        raise StoreError(f"unknown manifest kind {str(kind)[:16]!r} (known: {', '.join(KINDS)})") from None


def sign_envelope(manifest: AnyManifest, signer: "signing.Signer") -> dict:
    doc = manifest.to_dict()
    return {"manifest": doc, "signature": signer.sign(doc)}


def _envelope_parts(doc, kind: str, source: str) -> tuple[dict, object]:
    cls = _kind_class(kind)
    if not isinstance(doc, dict) or not isinstance(doc.get("manifest"), dict):
        what = "a flat v1 manifest" if isinstance(doc, dict) and "name" in doc else "not a manifest envelope"
        raise IntegrityError(f"{cls.kind} {_claimed(doc)}{source}: {what}, unsigned: refused")
    extra = sorted(str(k)[:32] for k in set(doc) - set(ENVELOPE_FIELDS))
    if extra:
        raise StoreError(f"{cls.kind} {_claimed(doc['manifest'])}{source}: envelope has unknown fields "
                         f"{', '.join(extra)}")
    return doc["manifest"], doc.get("signature")


def open_envelope(doc, kind: str, trusted: list["signing.TrustedKey"], source: str = "") -> AnyManifest:
    """The manifest of kind ``kind`` in a signed envelope, verified against ``trusted``.

    The signature is verified FIRST, over the manifest exactly as received; only a manifest that
    verifies is parsed. IntegrityError when it does not verify (or is of another kind), StoreError
    when a verified manifest is malformed; each one line naming name@version (as the document
    claims it) and ``source`` (e.g. " from http://store:8780")."""
    body, signature = _envelope_parts(doc, kind, source)
    label = f"{kind} {_claimed(body)}{source}"
    try:
        signing.verify(body, signature, trusted)
    except IntegrityError as exc:
        raise IntegrityError(f"{label}: {exc}") from None
    if body.get("kind") != kind:
        raise IntegrityError(f"{label}: the store answered with a manifest of kind "
                             f"{str(body.get('kind'))[:16]!r}: refused")
    try:
        return _CLASSES[kind].from_dict(body)
    except StoreError as exc:
        raise StoreError(f"{label}: {exc}") from None


def read_unverified(doc, kind: str) -> tuple[AnyManifest, dict | None]:
    """The manifest and the signature in an envelope, NOT verified: for the store reading its own
    files (listing, immutability checks). Hosts use :func:`open_envelope`."""
    body, signature = _envelope_parts(doc, kind, "")
    return _kind_class(kind).from_dict(body), signature if isinstance(signature, dict) else None
