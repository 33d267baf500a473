"""Store errors (programs and CP images)."""

from orchestrator.errors import VnfctlError


class StoreError(VnfctlError):
    """The store refused or could not serve a manifest or a file."""

    exit_code = 7


class NotFound(StoreError):
    """No such manifest, blob or key; its own class so the HTTP server can answer 404, not 500."""


class IntegrityError(StoreError):
    """A manifest that is unsigned or whose signature does not verify under a trusted key, or a file
    that does not match its manifest: it is refused and never executed or handed to QEMU."""

    exit_code = 8
