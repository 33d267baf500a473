"""A tiny classic-BPF interpreter for the instructions the project's socket filters use (ldh, ld,
jeq, ret), so the filters can be tested against frames without a kernel."""


def run_cbpf(program, frame: bytes) -> int:
    """What the filter returns for ``frame``: the bytes kept (0: dropped). A load past the
    frame's end drops it, as the kernel does."""
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x28:
            acc = int.from_bytes(frame[k:k + 2], "big") if len(frame) >= k + 2 else None
        elif code == 0x20:
            acc = int.from_bytes(frame[k:k + 4], "big") if len(frame) >= k + 4 else None
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x06:
            return k
        if acc is None:
            return 0
        pc += 1
