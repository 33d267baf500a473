"""The controller <-> host agent protocol: versioned JSON lines of named operations, each
operation declared once here.

Request:  {"v": 1, "id": 7, "op": "start_dp", "args": {...}}
Reply:    {"v": 1, "id": 7, "ok": true, "result": {...}}
      or  {"v": 1, "id": 7, "ok": false, "error": {"kind": "CoreAllocationError", "message": "..."}}

The agent runs only operations it registered by name (never "run this command"); a remote
error comes back as the same exception class when the controller knows it.

The declaration (oslo.privsep's entrypoints, as data): every operation is a row of ``OPS``, a
request type and a reply type, both frozen dataclasses whose fields are typed from a small
vocabulary (``Name``, ``Iface``, ``Mac``, ``IPv4``, ``Port``, ``CoreList``, ``Seconds``,
``ChannelPath``, ``Text``, ...). The daemon's dispatch and validation (``daemon.Agent.handle``),
the typed client (``client.AgentClient.request``) and the unit tests' fake agent all read this
one declaration, so a field renamed here is renamed at every end::

    reply = client.request(StartDp(function="fa", cp="fa-cp", dp="fa-dp", cores=1, ip="10.40.0.10",
                                   program=ProgramRef(name="dpdk_stub", version="1.0.0")))
    reply.pid, reply.cores, reply.mac

A message is checked where it is made: building one (``StartDp(...)``) or reading one off the
wire (``StartDp.from_json(args)``) raises ``ProtocolError("op start_dp: field 'mac': ...")``,
one line naming the operation and the field; an unknown field is refused. ``to_json()`` gives
the wire form: a field whose default is None is left out while it is None (so a new controller's
request reads the same to an older agent), every other field is always there.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Union

from orchestrator.agent import paths
from orchestrator.control.policy import FUNCTION_NAME, validate_table
from orchestrator.errors import AgentError, ProtocolError, VnfctlError  # AgentError, ProtocolError: re-exports

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20          # bytes of one request or reply line, its newline included, at either end
MAX_DEPTH = 32              # nesting of arrays and objects in one line
MAX_JSON_DEPTH = 16         # nesting inside a free-form JSON field (a CP's report, a policy table, DP counters)
MAX_INT = 2 ** 63           # every whole number on the wire is a 64-bit one: |n| < 2**63
MAX_DIGITS = 20
CHANNEL_DIR = str(paths.CHANNEL_DIR)


# -- the wire --------------------------------------------------------------------------------
def encode(doc: dict) -> bytes:
    """One line of JSON; never NaN or Infinity, which are no JSON (ValueError)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _no_constant(name: str):
    raise ValueError(f"{name} is no JSON number")


def _int64(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError("a number over 64 bits")
    value = int(text)
    if not -MAX_INT < value < MAX_INT:
        raise ValueError("a number over 64 bits")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("a number out of range")
    return value


def decode(line: bytes, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """One line of JSON within the protocol's bounds (its length, its nesting, 64-bit whole
    numbers, finite numbers), or ProtocolError. Also what the agent reads of a DP's own files."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"{what} is longer than {MAX_LINE} bytes")
    try:
        doc = json.loads(line, parse_constant=_no_constant, parse_int=_int64, parse_float=_finite)
    except RecursionError:
        raise ProtocolError(f"{what} nests deeper than {max_depth}") from None
    except ValueError as exc:
        why = str(exc) if "number" in str(exc) else "not JSON"
        raise ProtocolError(f"{what} is {why if why == 'not JSON' else 'not of this protocol: ' + why}") from None
    if _depth(doc) > max_depth:
        raise ProtocolError(f"{what} nests deeper than {max_depth}")
    return doc


def _depth(doc: Any) -> int:
    """How deep arrays and objects nest in ``doc`` (0 for a scalar), without recursion."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        todo.extend((child, level + 1) for child in children)
    return deepest


def request(msg_id: int, op: str, args: dict | None = None) -> dict:
    return {"v": PROTOCOL_VERSION, "id": msg_id, "op": op, "args": args or {}}


def is_int(value) -> bool:
    """A JSON whole number as this protocol takes one: an int, not a bool (True == 1 in Python),
    not a float that happens to be whole (1.0 == 1)."""
    return type(value) is int


def parse_request(line: bytes) -> dict:
    """A request line: ``v`` exactly 1 (not 1.0, not true), ``id`` a whole number (echoed in its
    reply, so never anything a reply could not carry), ``op`` a string, ``args`` an object."""
    doc = decode(line, "request")
    if not isinstance(doc, dict) or not is_int(doc.get("v")) or doc["v"] != PROTOCOL_VERSION \
            or not isinstance(doc.get("op"), str) or not isinstance(doc.get("args", {}), dict) \
            or not is_int(doc.get("id")) or doc["id"] < 0:
        raise ProtocolError(f"not a protocol v{PROTOCOL_VERSION} request")
    return doc


def reply_ok(msg_id, result) -> dict:
    return {"v": PROTOCOL_VERSION, "id": msg_id, "ok": True, "result": result}


def reply_error(msg_id, exc: BaseException) -> dict:
    # NOTE: a field that does not fit goes back as the ProtocolError every peer knows.
    kind = "ProtocolError" if isinstance(exc, FieldError) else \
        type(exc).__name__ if isinstance(exc, VnfctlError) else "AgentError"
    message = str(exc) if isinstance(exc, VnfctlError) else f"{type(exc).__name__}: {exc}"
    return {"v": PROTOCOL_VERSION, "id": msg_id, "ok": False, "error": {"kind": kind, "message": message}}


def error_class(kind: str) -> type[VnfctlError]:
    """The local class for a remote error kind (AgentError when unknown)."""
    from orchestrator.errors import CoreAllocationError

    known: dict[str, type[VnfctlError]] = {"CoreAllocationError": CoreAllocationError,
                                           "ProtocolError": ProtocolError, "AgentError": AgentError}
    try:
        from orchestrator.store.errors import IntegrityError, StoreError

        known.update({"IntegrityError": IntegrityError, "StoreError": StoreError})
    except ImportError:
        pass
    return known.get(kind, AgentError)


# -- the vocabulary ----------------------------------------------------------------------------
class FieldError(ProtocolError):
    """A field that does not fit its declaration: ``where`` (``op start_dp``), the field's
    ``path`` (``mac``, ``dps[0].mac``, ``program.name``) and why."""

    def __init__(self, where: str, path: str, why: str):
        why = " ".join(why.split())
        why = why if len(why) <= 300 else why[:297] + "..."
        self.where, self.path, self.why = where, path, why
        super().__init__(f"{where}: field '{path}': {why}")


class _Bad(Exception):
    """A value that does not fit, on its way up to the message that names it (never escapes)."""

    def __init__(self, path: str, why: str):
        super().__init__(why)
        self.path, self.why = path, why


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(key: Any) -> str:
    """A key as a field's path shows it: itself when plain, else quoted (one line, bounded)."""
    return key if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", key) else _show(key)


class Kind:
    """A word of the vocabulary: what a field's value (already of its Python type) may be.
    ``check`` returns the value or raises ValueError saying why not."""

    def check(self, value):
        return value


@dataclass(frozen=True)
class Pattern(Kind):
    regex: str
    what: str

    def check(self, value: str) -> str:
        if not re.fullmatch(self.regex, value):
            raise ValueError(f"not {self.what}: {_show(value)}")
        return value


@dataclass(frozen=True)
class Range(Kind):
    lo: float
    hi: float

    def check(self, value):
        if not self.lo <= value <= self.hi:
            raise ValueError(f"{_show(value)} is not between {self.lo} and {self.hi}")
        return value


@dataclass(frozen=True)
class Length(Kind):
    most: int

    def check(self, value: str) -> str:
        if len(value) > self.most:
            raise ValueError(f"longer than {self.most} characters ({len(value)})")
        if "\x00" in value:
            raise ValueError("holds a NUL character")
        return value


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...]

    def check(self, value: str) -> str:
        if value not in self.values:
            raise ValueError(f"not one of {', '.join(self.values)}: {_show(value)}")
        return value


class _Iface(Kind):
    def check(self, value: str) -> str:
        # NOTE: the kernel's dev_valid_name, and nothing a shell or an nft rule would read twice.
        if not 1 <= len(value) <= 15 or value in (".", "..") or not value.isascii() or not value.isprintable() \
                or any(c in value for c in " /:'\"\\`$"):
            raise ValueError(f"not an interface name (1-15 printable characters, no space, quote, '/' or ':'): "
                             f"{_show(value)}")
        return value


class _IPv4(Kind):
    def __init__(self, empty: bool = False):
        self.empty = empty

    def check(self, value: str) -> str:
        if self.empty and value == "":
            return value
        try:
            if str(ipaddress.IPv4Address(value)) == value:
                return value
        except ValueError:
            pass
        raise ValueError(f"not an IPv4 address (dotted quad): {_show(value)}")


class _Cidr(Kind):
    def check(self, value: str) -> str:
        try:
            ipaddress.IPv4Network(value)
        except ValueError:
            raise ValueError(f"not an IPv4 network (address/prefix): {_show(value)}") from None
        return value


class _ChannelPath(Kind):
    def check(self, value: str) -> str:
        name = value[len(CHANNEL_DIR) + 1:] if value.startswith(CHANNEL_DIR + "/") else ""
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", name) or ".." in name:
            raise ValueError(f"not a CP channel socket in {CHANNEL_DIR}: {_show(value)}")
        return value


class _AbsPath(Kind):
    def check(self, value: str) -> str:
        if not value.startswith("/") or len(value) > 4096 or "\x00" in value or ".." in value.split("/"):
            raise ValueError(f"not an absolute path: {_show(value)}")
        return value


class _Policy(Kind):
    def check(self, value: dict) -> dict:
        try:
            validate_table(value)       # ValueError names what is wrong
        except (TypeError, OverflowError) as exc:
            raise ValueError(f"not a policy table: {exc}") from None
        return value


class _Json(Kind):
    """A free-form JSON object (a CP's report, a DP's counters, a network report): string keys,
    finite numbers, nested at most MAX_JSON_DEPTH deep."""

    def check(self, value: dict) -> dict:
        todo = [(value, 1)]
        while todo:
            item, level = todo.pop()
            if isinstance(item, dict):
                if level > MAX_JSON_DEPTH:
                    raise ValueError(f"nests deeper than {MAX_JSON_DEPTH}")
                if not all(isinstance(k, str) for k in item):
                    raise ValueError("has a key that is not a string")
                todo.extend((v, level + 1) for v in item.values())
            elif isinstance(item, (list, tuple)):
                if level > MAX_JSON_DEPTH:
                    raise ValueError(f"nests deeper than {MAX_JSON_DEPTH}")
                todo.extend((v, level + 1) for v in item)
            elif isinstance(item, float) and not math.isfinite(item):
                raise ValueError("holds a number that is not finite")
            elif item is not None and not isinstance(item, (str, int, float)):
                raise ValueError(f"holds a {type(item).__name__}, not JSON")
        return value


NAME_RE = r"[a-z][a-z0-9-]{0,31}"
PROGRAM_PART_RE = r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}"

# Functions, CPs, DPs, VMs and hosts: the project's names (no '/', no '..': they become file names).
Name = Annotated[str, Pattern(NAME_RE, "a name (a lowercase letter, then lowercase letters, digits, '-'; "
                                        "at most 32)")]
FunctionName = Annotated[str, Pattern(FUNCTION_NAME.pattern.strip("^$"), "a function name (a lowercase letter, "
                                                                            "then lowercase letters, digits, '-'; "
                                                                            "at most 16)")]
Iface = Annotated[str, _Iface()]
Mac = Annotated[str, Pattern(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", "a MAC address (6 bytes, aa:bb:cc:dd:ee:ff)")]
IPv4 = Annotated[str, _IPv4()]
IPv4OrUnset = Annotated[str, _IPv4(empty=True)]
Cidr = Annotated[str, _Cidr()]
Port = Annotated[int, Range(1, 65535)]
Core = Annotated[int, Range(0, 65535)]
CoreList = tuple[Core, ...]
CoreMask = Annotated[str, Pattern(r"0x[0-9a-f]{1,1024}", "a core mask (0x and hex digits)")]
CoreMaskOrUnset = Annotated[str, Pattern(r"(0x[0-9a-f]{1,1024})?", "a core mask (0x and hex digits) or ''")]
CoreCount = Annotated[int, Range(1, 1024)]
Count = Annotated[int, Range(0, 2 ** 31)]
Pid = Annotated[int, Range(1, 2 ** 22)]
Version = Annotated[int, Range(0, 2 ** 53)]
Bytes = Annotated[int, Range(0, 2 ** 63)]
Timestamp = Annotated[float, Range(0, 2 ** 40)]
Figure = Annotated[float, Range(0, 2 ** 53)]       # a load average, a CPU percentage
IntervalS = Annotated[float, Range(0, 10)]
DeadlineS = Annotated[float, Range(0, 60)]
Token = Annotated[str, Pattern(r"[A-Za-z0-9._-]{1,64}", "a word (letters, digits, '.', '_', '-'; at most 64)")]
ProgramPart = Annotated[str, Pattern(PROGRAM_PART_RE, "a program or image name or version (letters, digits, "
                                                       "'.', '_', '-'; no '..')")]
ProgramText = Annotated[str, Pattern(PROGRAM_PART_RE + "@" + PROGRAM_PART_RE, "NAME@VERSION")]
Sha256 = Annotated[str, Pattern(r"[0-9a-f]{64}", "a sha256 (64 hex digits)")]
ChannelPath = Annotated[str, _ChannelPath()]
AbsPath = Annotated[str, _AbsPath()]
Idle = Annotated[str, Choice(("busy", "adaptive"))]
Text = Annotated[str, Length(4096)]
ShortText = Annotated[str, Length(256)]
JsonObject = Annotated[dict, _Json()]
PolicyTable = Annotated[dict, _Json(), _Policy()]


# -- messages ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Field:
    name: str
    type: Any
    required: bool
    omit_none: bool     # left out of to_json() while None (its default is None)


_FIELDS: dict[type, tuple[_Field, ...]] = {}


def _fields(cls: type) -> tuple[_Field, ...]:
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls, include_extras=True)
        _FIELDS[cls] = tuple(
            _Field(f.name, hints[f.name],
                   f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                   f.default is None)
            for f in dataclasses.fields(cls))
    return _FIELDS[cls]


def _convert(tp: Any, value: Any, path: str) -> Any:
    """``value`` as declared by ``tp`` (JSON lists become tuples, JSON objects nested messages),
    or _Bad naming ``path`` and why."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *kinds = typing.get_args(tp)
        value = _convert(base, value, path)
        for kind in kinds:
            try:
                value = kind.check(value)
            except ValueError as exc:
                raise _Bad(path, str(exc)) from None
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (other,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(other, value, path)
    if tp is bool:
        if type(value) is not bool:
            raise _Bad(path, f"not a boolean (true or false): {_show(value)}")
        return value
    if tp is int:
        if type(value) is not int:
            raise _Bad(path, f"not a whole number: {_show(value)}")
        return value
    if tp is float:
        if type(value) not in (int, float):
            raise _Bad(path, f"not a number: {_show(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _Bad(path, f"not a finite number: {_show(value)}")
        return number
    if tp is str:
        if type(value) is not str:
            raise _Bad(path, f"not a string: {_show(value)}")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise _Bad(path, f"not a JSON object: {_show(value)}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _Bad(path, f"not a list: {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _Bad(path, f"not a list of {len(args)}: {_show(value)}")
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise _Bad(path, f"not a JSON object: {_show(value)}")
        out = {}
        for k, v in value.items():
            where = f"{path}[{_key(k)}]"
            out[_convert(key_tp, k, where)] = _convert(value_tp, v, where)
        return out
    if isinstance(tp, type) and issubclass(tp, Message):
        if isinstance(value, tp):
            return value
        try:
            return tp.from_json(value)
        except FieldError as exc:
            raise _Bad(f"{path}.{exc.path}", exc.why) from None
        except ProtocolError:
            raise _Bad(path, f"not a JSON object: {_show(value)}") from None
    raise TypeError(f"the protocol declares a field of a type it has no rule for: {tp!r}")


def _dump(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, kw_only=True)
class Message:
    """A request, a reply or a record inside one: a frozen dataclass checked as it is made."""

    def __post_init__(self):
        try:
            for f in _fields(type(self)):
                value = getattr(self, f.name)
                typed = _convert(f.type, value, f.name)
                if typed is not value:
                    object.__setattr__(self, f.name, typed)
            self._check()
        except _Bad as bad:
            raise FieldError(self._where(), bad.path, bad.why) from None

    def _check(self) -> None:
        """What no one field can say (raise _Bad(field, why))."""

    @classmethod
    def _where(cls) -> str:
        return cls.__name__

    @classmethod
    def from_json(cls, doc: Any, where: str | None = None):
        """The message in ``doc`` (a JSON object), or ProtocolError naming ``where`` and the field."""
        where = where or cls._where()
        if not isinstance(doc, dict):
            raise ProtocolError(f"{where}: not a JSON object: {_show(doc)}")
        fields = _fields(cls)
        names = {f.name for f in fields}
        for key in doc:
            if key not in names:
                raise FieldError(where, _key(key), "unknown field")
        for f in fields:
            if f.required and f.name not in doc:
                raise FieldError(where, f.name, "missing")
        try:
            return cls(**doc)
        except FieldError as exc:
            raise FieldError(where, exc.path, exc.why) from None

    def to_json(self) -> dict:
        out = {}
        for f in _fields(type(self)):
            value = getattr(self, f.name)
            if value is None and f.omit_none:
                continue
            out[f.name] = _dump(value)
        return out


@dataclass(frozen=True, kw_only=True)
class Request(Message):
    """A request: its operation's name is ``op`` (set where ``OPS`` is built)."""

    op: ClassVar[str] = ""

    @classmethod
    def _where(cls) -> str:
        return f"op {cls.op}"


@dataclass(frozen=True, kw_only=True)
class Reply(Message):
    """A reply (``ops``: the operations answering with it, set where ``OPS`` is built)."""

    ops: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _where(cls) -> str:
        return f"op {cls.ops[0]} reply" if len(cls.ops) == 1 else cls.__name__


# -- records inside replies ------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CoreTable(Reply):
    """The host's core allocation (the ``cores`` reply; ``tables`` holds it too). An agent from
    before core sharing sends only offered, free, used, free_mask."""

    offered: CoreList
    free: CoreList
    used: dict[Name, CoreList]
    free_mask: CoreMask
    share: CoreCount = 1
    free_exclusive: CoreList | None = None
    free_slots: Count | None = None
    exclusive: tuple[Name, ...] | None = None

    def usable(self, exclusive: bool) -> list[int]:
        """Pure: the cores a DP could be given (one that holds its cores alone: cores nobody
        holds; an agent from before sharing sends only ``free``, which then means both)."""
        if exclusive and self.free_exclusive is not None:
            return list(self.free_exclusive)
        return list(self.free)

    @property
    def places(self) -> int:
        """Free places for one-core DPs that sleep when idle (``free`` on an agent from before sharing)."""
        return self.free_slots if self.free_slots is not None else len(self.free)


@dataclass(frozen=True, kw_only=True)
class ProgramRef(Message):
    name: ProgramPart
    version: ProgramPart


@dataclass(frozen=True, kw_only=True)
class _DpCommon(Message):
    """What the CP-DP table keeps of a DP (the fields the agent's internals add included: the
    wire carries the record as the agent holds it)."""

    dp: Name
    function: FunctionName
    core_mask: CoreMask
    cores: CoreList
    ip: IPv4
    mac: Mac
    pid: Pid
    iface: Iface | None = None
    started_at: Timestamp | None = None
    active: bool = True
    program: ProgramText | None = None
    sha256: Sha256 | None = None
    takes_policy: bool = True           # False: a stock DPDK application, reads no policy table
    preset: Token | None = None
    policy_shm: AbsPath | None = None
    dp_iface: Iface | None = None       # a preset DP's own interface (see dpnet.py)
    run_dir: AbsPath | None = None
    pid_start: Timestamp | None = None
    claimer_pid: Pid | None = None      # the agent's ARP claim for a preset DP (see arpclaim.py)
    claimer_start: Timestamp | None = None
    user: Token | None = None           # the user it runs as (see dpuser.py); None: root (older records)
    work_dir: AbsPath | None = None     # its own directory (its stats)


@dataclass(frozen=True, kw_only=True)
class DpRecord(_DpCommon):
    """A DP as the CP-DP table records it (``tables``' cp_dp values)."""

    claims: bool | None = None          # set by the DP signals; None: as ``active``
    stats: AbsPath | None = None        # the DP's stats file


@dataclass(frozen=True, kw_only=True)
class StartDpReply(DpRecord, Reply):
    """The record of the DP just started, and its CP."""

    cp: Name


@dataclass(frozen=True, kw_only=True)
class DpState(_DpCommon):
    """A DP as ``dp_status`` reports it: its record and how it is now."""

    cp: Name
    alive: bool
    affinity: CoreList | None           # the cores its process may run on (None: not alive)
    pinned: bool
    stats: JsonObject | None            # its counters (None: unreadable)
    claims: bool                        # it answers ARP for its IP
    claimer_alive: bool | None          # a preset DP's ARP claim runs (None: not a preset DP)
    healthy: bool


@dataclass(frozen=True, kw_only=True)
class CpRecord(Message):
    """A CP as the VM-CP table records it (``tables``' vm_cp values)."""

    cp: Name
    function: FunctionName
    cp_core_mask: CoreMaskOrUnset
    channel: ChannelPath
    since: Timestamp


@dataclass(frozen=True, kw_only=True)
class AccelFacts(Message):
    """virt.accel.KvmFacts as the host reads them."""

    cpu_flags: tuple[Token, ...]
    modules: tuple[Token, ...]
    dev_kvm_usable: bool
    libvirt_kvm: bool | None = None


@dataclass(frozen=True, kw_only=True)
class InterfaceFacts(Message):
    name: Iface
    present: bool
    operstate: ShortText | None


@dataclass(frozen=True, kw_only=True)
class LibvirtFacts(Message):
    """libvirt's settings in force (``error`` when they could not be read)."""

    migration_address: ShortText | None = None
    migration_port_min: ShortText | None = None
    migration_port_max: ShortText | None = None
    host_uuid: ShortText | None = None
    error: Text | None = None


@dataclass(frozen=True, kw_only=True)
class CpuFacts(Message):
    online: CoreList
    isolated: CoreList
    dp_cores: CoreList
    problem: Text | None


@dataclass(frozen=True, kw_only=True)
class FirewallFacts(Message):
    closed: tuple[Text, ...] | None = None      # vnfctl's openings an active firewall lacks
    error: Text | None = None


@dataclass(frozen=True, kw_only=True)
class NameFacts(Message):
    """The host's own name and how its lookup went (agent/hostname.py: libvirt resolves it at
    every migration step)."""

    name: ShortText
    seconds: Figure
    finished: bool = True                       # False: still unanswered after ``seconds``
    addresses: tuple[ShortText, ...] = ()
    error: Text | None = None


@dataclass(frozen=True, kw_only=True)
class SetupFacts(Message):
    """What the host bring-up made, as it is now (site check judges it)."""

    guest_network: Cidr
    guest_gateway_mac: Mac
    migration_address: IPv4OrUnset
    migration_ports: tuple[Port, Port]
    network: JsonObject                 # hostnet.read_state's report (hostnet.prereq_problems judges it)
    channel_dir: bool
    libvirt: LibvirtFacts
    cpus: CpuFacts
    firewall: FirewallFacts
    migration_tls: JsonObject | None = None     # migration_tls.describe's report; None: plain TCP chosen
    hostname: NameFacts | None = None           # None: an agent older than the check


# -- requests and replies, per operation -------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Hello(Request):
    pass


@dataclass(frozen=True, kw_only=True)
class HelloReply(Reply):
    proto: Annotated[int, Range(0, 2 ** 31)]
    host: Name
    pid: Pid
    ops: tuple[Token, ...]
    version: ShortText


@dataclass(frozen=True, kw_only=True)
class HostFacts(Request):
    setup: bool = True      # False: without what the bring-up made (site check's part), as a deploy asks


@dataclass(frozen=True, kw_only=True)
class HostFactsReply(Reply):
    host: Name
    accel_facts: AccelFacts
    kernel: ShortText
    cpus: Count
    agent_version: ShortText
    data_interface: InterfaceFacts
    setup: SetupFacts | None = None     # None: not asked (HostFacts(setup=False)), or an older agent
    # the CPUs its CP guests' QEMU is pinned to (online, not DP cores, not isolated); () when the
    # DP cores take every CPU, None from an older agent: guests unpinned
    guest_cpus: CoreList | None = None


@dataclass(frozen=True, kw_only=True)
class Cores(Request):
    pass


@dataclass(frozen=True, kw_only=True)
class ReleaseCores(Request):
    dp: Name


@dataclass(frozen=True, kw_only=True)
class ReleaseCoresReply(Reply):
    dp: Name
    cores_freed: CoreList


@dataclass(frozen=True, kw_only=True)
class Tables(Request):
    pass


@dataclass(frozen=True, kw_only=True)
class TablesReply(Reply):
    vm_cp: dict[Name, CpRecord]         # VM -> its CP
    cp_dp: dict[Name, DpRecord]         # CP -> its DP
    cores: CoreTable


@dataclass(frozen=True, kw_only=True)
class Load(Request):
    interval_s: IntervalS = 0.2


@dataclass(frozen=True, kw_only=True)
class LoadReply(Reply):
    host: Name
    cpu_percent: tuple[Figure, ...]
    loadavg: tuple[Figure, Figure, Figure]
    mem_available: Bytes
    mem_total: Bytes
    dps: Count
    cps: Count
    free_cores: Count


@dataclass(frozen=True, kw_only=True)
class FetchProgram(Request):
    name: ProgramPart
    version: ProgramPart


@dataclass(frozen=True, kw_only=True)
class FetchProgramReply(Reply):
    name: ProgramPart
    version: ProgramPart
    sha256: Sha256
    path: AbsPath
    flags: tuple[Token, ...] | None = None      # the DP protocol's signals it implements (None: an older agent)
    options: tuple[Token, ...] | None = None
    preset: Token | None = None
    takes_policy: bool = True


@dataclass(frozen=True, kw_only=True)
class FetchImage(Request):
    name: ProgramPart
    version: ProgramPart


@dataclass(frozen=True, kw_only=True)
class FetchImageReply(Reply):
    name: ProgramPart
    version: ProgramPart
    kernel: AbsPath
    initrd: AbsPath


@dataclass(frozen=True, kw_only=True)
class CheckStore(Request):
    pass


@dataclass(frozen=True, kw_only=True)
class CheckStoreReply(Reply):
    key_id: ShortText | None            # None: the store publishes no key
    trusted: bool
    verified: Count
    bad: tuple[Text, ...]


@dataclass(frozen=True, kw_only=True)
class StartDp(Request):
    function: FunctionName
    cp: Name
    dp: Name
    program: ProgramRef
    cores: CoreCount
    ip: IPv4
    iface: Iface | None = None          # None: the host's data interface
    mac: Mac | None = None              # None: the host's stable MAC for the DP
    port: Port | None = None
    idle: Idle | None = None            # None: busy
    standby: bool = False


@dataclass(frozen=True, kw_only=True)
class _OneDp(Request):
    """A DP named by itself or by its CP."""

    dp: Name | None = None
    cp: Name | None = None

    def _check(self) -> None:
        if self.dp is None and self.cp is None:
            raise _Bad("dp", "missing (name the DP, or its CP)")


@dataclass(frozen=True, kw_only=True)
class StopDp(_OneDp):
    deadline_s: DeadlineS = 2.0


@dataclass(frozen=True, kw_only=True)
class StopDpReply(Reply):
    stopped: bool
    dp: Name | None = None
    how: ShortText | None = None
    cores_freed: CoreList | None = None
    final_stats: JsonObject | None = None
    reason: Text | None = None          # why nothing was stopped


@dataclass(frozen=True, kw_only=True)
class DpStatus(Request):
    dp: Name | None = None              # None: every DP here


@dataclass(frozen=True, kw_only=True)
class DpStatusReply(Reply):
    dps: tuple[DpState, ...]

    @property
    def first(self) -> DpState | None:
        return self.dps[0] if self.dps else None


@dataclass(frozen=True, kw_only=True)
class ActivateDp(_OneDp):
    pass


@dataclass(frozen=True, kw_only=True)
class RetireDp(_OneDp):
    pass


@dataclass(frozen=True, kw_only=True)
class DeactivateDp(_OneDp):
    pass


@dataclass(frozen=True, kw_only=True)
class AnnounceDp(_OneDp):
    pass


@dataclass(frozen=True, kw_only=True)
class DpSignalReply(Reply):
    """The DP's state after a DP protocol signal (activate, retire, deactivate, announce)."""

    dp: Name
    pid: Pid
    active: bool
    claims: bool
    at: Timestamp


@dataclass(frozen=True, kw_only=True)
class SeedTable(Request):
    cp: Name
    version: Version
    table: PolicyTable


@dataclass(frozen=True, kw_only=True)
class SeedTableReply(Reply):
    cp: Name
    version: Version
    used: bool | None = None            # False: the DP's program reads no table


@dataclass(frozen=True, kw_only=True)
class RegisterCp(Request):
    vm: Name
    cp: Name
    function: FunctionName
    channel: ChannelPath | None = None          # None: CHANNEL_DIR/VM.sock
    cp_core_mask: CoreMaskOrUnset | None = None


@dataclass(frozen=True, kw_only=True)
class RegisterCpReply(Reply):
    vm: Name
    cp: Name


@dataclass(frozen=True, kw_only=True)
class UnregisterCp(Request):
    vm: Name


@dataclass(frozen=True, kw_only=True)
class UnregisterCpReply(Reply):
    vm: Name
    removed: bool


@dataclass(frozen=True, kw_only=True)
class CpReport(Request):
    vm: Name


@dataclass(frozen=True, kw_only=True)
class CpReportReply(Reply):
    vm: Name
    connected: bool
    report: JsonObject | None           # the CP's latest report, as it sent it
    report_at: Timestamp | None
    table_version: Version | None
    connections: Count
    refused: Count | None = None        # guest messages the relay refused (None: none since it started)
    refusal: ShortText | None = None    # why the last one was


@dataclass(frozen=True, kw_only=True)
class CpTable(Request):
    vm: Name


@dataclass(frozen=True, kw_only=True)
class CpTableReply(Reply):
    vm: Name
    version: Version | None             # None: no table relayed yet
    table: PolicyTable | None


# -- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    name: str
    request: type[Request]
    reply: type[Reply]
    doc: str


OPS: dict[str, Operation] = {o.name: o for o in (
    Operation("hello", Hello, HelloReply, "the agent's protocol version, host, pid, operations and version"),
    Operation("host_facts", HostFacts, HostFactsReply, "what the controller decides about this host from"),
    Operation("cores", Cores, CoreTable, "the cores offered to DPs, which are free and who holds which"),
    Operation("release_cores", ReleaseCores, ReleaseCoresReply, "free the cores held for a DP with no record"),
    Operation("tables", Tables, TablesReply, "the VM-CP and CP-DP tables and the core allocation"),
    Operation("load", Load, LoadReply, "the host's CPU load, memory and how many DPs and CPs it runs"),
    Operation("fetch_program", FetchProgram, FetchProgramReply, "fetch a DP program from the store, verified"),
    Operation("fetch_image", FetchImage, FetchImageReply, "fetch a CP guest image from the store, verified"),
    Operation("check_store", CheckStore, CheckStoreReply, "is the store reachable, signing with a trusted key"),
    Operation("start_dp", StartDp, StartDpReply, "start a DP on cores of its own, active or in standby"),
    Operation("stop_dp", StopDp, StopDpReply, "stop a DP (drained within the deadline) and free its cores"),
    Operation("dp_status", DpStatus, DpStatusReply, "the DPs here (or one) and how each is now"),
    Operation("activate_dp", ActivateDp, DpSignalReply, "standby -> active: serve and claim the IP"),
    Operation("retire_dp", RetireDp, DpSignalReply, "active -> retiring: serve, no longer claim the IP"),
    Operation("deactivate_dp", DeactivateDp, DpSignalReply, "active -> standby: stop answering"),
    Operation("announce_dp", AnnounceDp, DpSignalReply, "send the DP's gratuitous ARP again"),
    Operation("seed_table", SeedTable, SeedTableReply, "give a DP its CP's policy table before the CP arrives"),
    Operation("register_cp", RegisterCp, RegisterCpReply, "record a CP guest and relay its channel"),
    Operation("unregister_cp", UnregisterCp, UnregisterCpReply, "forget a CP guest and stop its relay"),
    Operation("cp_report", CpReport, CpReportReply, "the CP's latest report as its relay holds it"),
    Operation("cp_table", CpTable, CpTableReply, "the CP's latest policy table as its relay holds it"),
)}

for _o in OPS.values():
    assert not _o.request.op, f"{_o.request.__name__} is the request of two operations"
    _o.request.op = _o.name
    _o.reply.ops = _o.reply.ops + (_o.name,)
del _o


def operation_of(req: Request) -> Operation:
    """The operation ``req`` asks for."""
    op = OPS.get(getattr(type(req), "op", ""))
    if op is None or type(req) is not op.request:
        raise ProtocolError(f"{type(req).__name__} is not a request of the agent protocol")
    return op


def request_from(op: str, args: dict) -> Request:
    """The typed request for ``op`` from keyword arguments (what ``call(op, **args)`` was given)."""
    if op not in OPS:
        raise ProtocolError(f"unknown operation '{op}'")
    return OPS[op].request.from_json(args)
