"""The store: content-addressed files plus one signed manifest envelope per kind, name and version.

    DIR/blobs/sha256/<hex>                  program files, CP kernels and initramfs (0444)
    DIR/programs/<name>/<version>.json      signed envelopes of program manifests
    DIR/images/<name>/<version>.json        signed envelopes of CP image manifests

(A v1 store's ``DIR/manifests/`` is not read: its manifests are unsigned.) Versions are
immutable: pushing the same name@version again with the same content (``created`` aside)
returns the existing manifest (restoring a blob that was altered, and re-signing the envelope
if it does not verify under the current key, e.g. after a key rotation); other content is
refused. Every file appears by an atomic rename or link, so a reader (the HTTP server) never
sees a half-written blob or envelope.

The store signs (``key_file``, loaded only when a push needs it) but does not verify what it
reads back: hosts verify (``orchestrator.store.client``). ``entries`` says which envelopes verify
under the store's own public key, for an operator's listing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.store import signing
from orchestrator.store.errors import IntegrityError, NotFound, StoreError
from orchestrator.store.manifest import (DEFAULT_LAUNCH, KINDS, NATIVE, AnyManifest, BlobRef, ImageManifest, Launch,
                                         ProgramManifest, check_ref, check_sha, content, read_unverified,
                                         sign_envelope)

DEFAULT_DIR = Path(os.environ.get("VNFCTL_STORE_DIR", "/var/lib/vnfctl/store"))
DP_SOURCE = Path(__file__).resolve().parents[2] / "dpdk_stub"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _envelope_bytes(envelope: dict) -> bytes:
    return json.dumps(envelope, indent=1, sort_keys=True).encode()


def _publish(path: Path, data: bytes, mode: int, replace: bool) -> bool:
    """Write ``data`` to a temporary file beside ``path``, then publish it: by a hard link when
    ``replace`` is false (False if ``path`` already existed), by an atomic rename otherwise.

    NOTE: a hard link (not a rename) publishes a new file, because link() fails when the name
    exists: two concurrent pushes of one name@version cannot both win."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` with ``data`` atomically, only if it does not exist yet; False if it did."""
    return _publish(path, data, mode, replace=False)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically (readers see the old file or the new one)."""
    _publish(path, data, mode, replace=True)


@dataclass(frozen=True)
class Entry:
    """One envelope in the store, for a listing: its manifest, the key id its signature names,
    and whether that signature verifies under the store's own public key."""

    manifest: AnyManifest
    key_id: str | None
    verified: bool

    def to_dict(self) -> dict:
        return {"kind": self.manifest.kind, "manifest": self.manifest.to_dict(), "key_id": self.key_id,
                "verified": self.verified}


class Store:
    def __init__(self, root: Path = DEFAULT_DIR, key_file: Path = signing.DEFAULT_KEY):
        self.root = Path(root)
        self.key_file = Path(key_file)
        self._signer: signing.Signer | None = None

    @property
    def signer(self) -> signing.Signer:
        """The signing key, loaded on first use: only pushes need it (StoreError if there is none)."""
        if self._signer is None:
            self._signer = signing.load_signer(self.key_file)
        return self._signer

    def public_key(self) -> signing.TrustedKey | None:
        """The store's public key from ``<key_file>.pub`` (None if there is none): reading it does
        not need access to the private key."""
        key = signing.read_public(signing.public_path(self.key_file))
        if key is None and self._signer is not None:
            key = self._signer.trusted
        return key

    def blob_path(self, sha: str) -> Path:
        check_sha(sha)
        return self.root / "blobs" / "sha256" / sha

    def envelope_path(self, kind: str, name: str, version: str) -> Path:
        if kind not in KINDS:
            raise StoreError(f"unknown manifest kind {str(kind)[:16]!r} (known: {', '.join(KINDS)})")
        check_ref(name, version, kind)
        return self.root / f"{kind}s" / name / f"{version}.json"

    def _read(self, path: Path) -> dict:
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            raise
        except ValueError as exc:
            raise StoreError(f"{path}: not JSON: {exc}") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read it ({exc.strerror or exc})") from None

    def read_envelope(self, kind: str, name: str, version: str) -> dict:
        """The envelope of kind/name/version as it is on disk (not verified); NotFound if none."""
        path = self.envelope_path(kind, name, version)
        try:
            return self._read(path)
        except FileNotFoundError:
            raise NotFound(f"no {kind} {name}@{version} in the store {self.root}") from None

    def _paths(self, kind: str) -> list[Path]:
        if kind not in KINDS:
            raise StoreError(f"unknown manifest kind {str(kind)[:16]!r} (known: {', '.join(KINDS)})")
        return sorted((self.root / f"{kind}s").glob("*/*.json"))

    def envelopes(self, kind: str) -> list[dict]:
        """Every envelope of ``kind`` as it is on disk (not verified), sorted by name and version."""
        out = []
        for path in self._paths(kind):
            try:
                out.append(self._read(path))
            except FileNotFoundError:
                continue  # removed since it was listed
        return out

    def _parse(self, path: Path, doc: dict, kind: str) -> tuple[AnyManifest, dict | None]:
        try:
            manifest, signature = read_unverified(doc, kind)
        except StoreError as exc:
            raise StoreError(f"{path}: {exc}") from None
        if (manifest.name, manifest.version) != (path.parent.name, path.stem):
            raise StoreError(f"{path}: holds the manifest of {manifest.ref}")
        return manifest, signature

    def _get(self, kind: str, name: str, version: str) -> AnyManifest:
        doc = self.read_envelope(kind, name, version)
        return self._parse(self.envelope_path(kind, name, version), doc, kind)[0]

    def get_program(self, name: str, version: str) -> ProgramManifest:
        return self._get("program", name, version)  # type: ignore[return-value]

    def get_image(self, name: str, version: str) -> ImageManifest:
        return self._get("image", name, version)  # type: ignore[return-value]

    def _list(self, kind: str) -> list[tuple[AnyManifest, dict, dict | None]]:
        out = []
        for path in self._paths(kind):
            try:
                doc = self._read(path)
            except FileNotFoundError:
                continue
            manifest, signature = self._parse(path, doc, kind)
            out.append((manifest, doc, signature))
        return out

    def list_programs(self) -> list[ProgramManifest]:
        return [m for m, _, _ in self._list("program")]  # type: ignore[misc]

    def list_images(self) -> list[ImageManifest]:
        return [m for m, _, _ in self._list("image")]  # type: ignore[misc]

    def entries(self) -> list[Entry]:
        """Programs, then images, each with its signature's key id and whether it verifies under the
        store's own public key (False for all when the store has no public key)."""
        key = self.public_key()
        out = []
        for kind in KINDS:
            for manifest, doc, signature in self._list(kind):
                verified = False
                if key is not None:
                    try:
                        signing.verify(doc["manifest"], signature, [key])
                        verified = True
                    except IntegrityError:
                        pass
                key_id = signature.get("key_id") if signature else None
                out.append(Entry(manifest, key_id if isinstance(key_id, str) else None, verified))
        return out

    def _ingest(self, file: Path, tmps: list[str]) -> tuple[str, int]:
        """Copy ``file`` into a temporary file beside the blobs, hashing it on the way; the
        temporary file's path is appended to ``tmps`` (the caller publishes or removes it).

        NOTE: hashed while copied, so a blob is exactly the bytes that were hashed even if
        ``file`` changes meanwhile."""
        blobs = self.root / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".tmp-", suffix=".part")
        tmps.append(tmp)
        h, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out, open(file, "rb") as src:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise StoreError(f"cannot copy {file} into the store {self.root}: {exc.strerror or exc}") from None
        return h.hexdigest(), size

    def push_program(self, file: Path, name: str, version: str, launch: Launch = DEFAULT_LAUNCH) -> ProgramManifest:
        """Publish ``file`` as program name@version, launched as ``launch``, and return its manifest."""
        check_ref(name, version, "program")
        file = Path(file)
        if not file.is_file():
            raise StoreError(f"no program file {file}")
        if not isinstance(launch, Launch):
            raise StoreError(f"program {name}@{version}: launch must be a Launch")
        return self._push([file], lambda blobs: ProgramManifest(name, version, *blobs[0], _now(), launch))

    def push_image(self, kernel: Path, initrd: Path, name: str, version: str) -> ImageManifest:
        """Publish a CP guest image (kernel and initramfs) as image name@version."""
        check_ref(name, version, "image")
        kernel, initrd = Path(kernel), Path(initrd)
        for role, f in (("kernel", kernel), ("initramfs", initrd)):
            if not f.is_file():
                raise StoreError(f"image {name}@{version}: no {role} file {f}")
        return self._push([kernel, initrd], lambda blobs: ImageManifest(name, version, _now(), BlobRef(*blobs[0]),
                                                                        BlobRef(*blobs[1])))

    def _push(self, files: list[Path], make) -> AnyManifest:
        signer = self.signer  # NOTE: before any copy: no key, nothing written
        tmps: list[str] = []
        try:
            blobs = [self._ingest(f, tmps) for f in files]
            manifest = make(blobs)
            existing = self._existing(manifest)
            # NOTE: replaced even if present: the bytes just hashed are known good, a blob
            # altered in place on the store is not, and a rename is atomic for readers.
            for tmp, (sha, _) in zip(tmps, blobs):
                os.chmod(tmp, 0o444)
                os.replace(tmp, self.blob_path(sha))
            if existing:
                return self._signed(existing, signer)
        finally:
            for tmp in tmps:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        path = self.envelope_path(manifest.kind, manifest.name, manifest.version)
        if _write_new(path, _envelope_bytes(sign_envelope(manifest, signer)), 0o444):
            return manifest
        existing = self._existing(manifest)  # a concurrent push of this version won
        if existing is None:
            raise StoreError(f"{manifest.kind} {manifest.ref}: its envelope {path} vanished while it was published")
        return self._signed(existing, signer)

    def _existing(self, manifest: AnyManifest) -> AnyManifest | None:
        """The manifest already published for the same kind and name@version if its content is the
        same; StoreError if it has other content; None if there is none."""
        try:
            existing = self._get(manifest.kind, manifest.name, manifest.version)
        except NotFound:
            return None
        if content(existing) == content(manifest):
            return existing
        if isinstance(existing, ProgramManifest):
            other = (f"sha256 {existing.sha256}" if existing.sha256 != manifest.sha256  # type: ignore[union-attr]
                     else f"another launch ({existing.launch.runtime}, cores as {existing.launch.cores})")
        else:
            other = f"other files (kernel {existing.kernel.sha256[:12]}, initrd {existing.initrd.sha256[:12]})"
        raise StoreError(f"{existing.kind} {existing.ref} already exists with {other}; versions are immutable")

    def _signed(self, existing: AnyManifest, signer: signing.Signer) -> AnyManifest:
        """``existing``, its envelope re-signed in place if its signature does not verify under
        ``signer``'s key (the key was rotated, or the signature damaged).

        NOTE: this signs only a manifest whose content the operator has just pushed again, so it
        never blesses content changed on the store's disk: that was refused as other content."""
        path = self.envelope_path(existing.kind, existing.name, existing.version)
        doc = self.read_envelope(existing.kind, existing.name, existing.version)
        try:
            signing.verify(doc.get("manifest"), doc.get("signature"), [signer.trusted])
        except IntegrityError:
            _replace(path, _envelope_bytes(sign_envelope(existing, signer)), 0o444)
        return existing


def publish_dp(store: Store, name: str = "dpdk_stub", version: str | None = None) -> ProgramManifest:
    """Pack this repo's DP and push it as name@version (default :func:`dp_version`) with the
    default launch."""
    check_ref(name, version or "0", "program")
    archive = dp_archive()
    version = version or _version_of(archive)
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / f"{name}.pyz"
        program.write_bytes(archive)
        return store.push_program(program, name, version)


TESTPMD = "/usr/bin/dpdk-testpmd"
TESTPMD_LAUNCH = Launch(NATIVE, "lcores", preset="testpmd-5tswap")


def testpmd_version(path: str = TESTPMD, dpdk_version: str | None = None) -> str:
    """``<DPDK's version>-<first 8 hex of the file's sha256>``: a rebuilt binary is a new
    immutable version even when Debian's version string stayed the same."""
    if dpdk_version is None:
        import subprocess

        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpdk-dev"], capture_output=True, text=True)
        dpdk_version = out.stdout.strip() if out.returncode == 0 else "0"
    upstream = "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in dpdk_version.split("-")[0]) or "0"
    return f"{upstream[:40]}-{_sha256_file(Path(path))[:8]}"


def publish_testpmd(store: Store, path: str = TESTPMD, name: str = "dpdk-testpmd") -> ProgramManifest:
    """Debian's dpdk-testpmd as a DP program (preset testpmd-5tswap): the hosts run the store's
    copy of the binary, with the DPDK libraries and drivers they have installed."""
    if not Path(path).is_file():
        raise StoreError(f"{path} is not installed here (Debian package dpdk-dev)")
    return store.push_program(Path(path), name, testpmd_version(path), TESTPMD_LAUNCH)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish_cp_image(store: Store, image, name: str = "cp-guest") -> ImageManifest:
    """Push a built CP image (``images.builder.CpImage``) as name@<first 16 hex of its digest>: the
    digest is of the image's inputs, so an unchanged image is the same immutable version."""
    digest = getattr(image, "digest", None)
    if not isinstance(digest, str) or len(digest) < 16:
        raise StoreError(f"CP image digest {digest!r} is too short to name a version")
    return store.push_image(image.kernel, image.initrd, name, digest[:16])


def _dp_files(source: Path) -> list[Path]:
    return sorted(p for p in source.rglob("*.py") if "__pycache__" not in p.parts)


_ZIP_MAIN = b"import sys\nfrom dpdk_stub.__main__ import main\nsys.exit(main())\n"
_ZIP_MAIN_RUNPY = b"import runpy\nrunpy.run_module('dpdk_stub', run_name='__main__', alter_sys=True)\n"


def dp_archive(source: Path | None = None) -> bytes:
    """The bytes of the DP program file for ``dpdk_stub`` at ``source`` (default: this repo's).

    It has the stdlib ``zipapp`` layout (a ``#!`` line, then a zip with a top-level
    ``__main__.py``) but is written with ``zipfile`` directly: ``zipapp.create_archive`` stamps
    each entry with the file's mtime, and the archive must be deterministic (sorted entries,
    fixed timestamps and modes, no caches) so the same source always has the same sha256 and
    re-pushing an unchanged DP is a no-op."""
    source = Path(source or DP_SOURCE)
    if not (source / "__init__.py").exists():
        raise StoreError(f"{source} is not a Python package (no __init__.py)")
    buf = io.BytesIO()
    buf.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buf, "w") as z:
        def entry(arcname: str, data: bytes) -> None:
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)

        entry("__main__.py", _ZIP_MAIN if (source / "__main__.py").exists() else _ZIP_MAIN_RUNPY)
        for p in _dp_files(source):
            entry(f"dpdk_stub/{p.relative_to(source).as_posix()}", p.read_bytes())
    return buf.getvalue()


def build_dp_zipapp(out: Path, source: Path | None = None) -> Path:
    """Write :func:`dp_archive` to ``out`` (atomically) and return ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_bytes(dp_archive(source))
    os.replace(tmp, out)
    return out


def dp_version(source: Path | None = None) -> str:
    """The DP program's version: a fixed prefix plus a short hash of the archive itself, so a
    changed DP (or a changed way of packing it) is a new immutable version and an unchanged one
    the same."""
    return _version_of(dp_archive(source))


def _version_of(archive: bytes, launch: Launch = DEFAULT_LAUNCH) -> str:
    """The version of this repo's DP: a digest of the program and of how it is launched, so that a
    changed launch schema is a new immutable version, never a clash with the published one."""
    h = hashlib.sha256(archive)
    h.update(json.dumps(launch.to_dict(), sort_keys=True).encode())
    return f"1.0.0-{h.hexdigest()[:8]}"
