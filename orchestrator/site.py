"""Opening a site: the controller for a lab (entered from its management namespaces) or for a
real site (an inventory and a state database).

This sits above both the controller and the lab: the controller knows nothing of labs, and a
lab is only one way to have hosts to drive.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.controller.controller import Controller
from orchestrator.controller.inventory import load_inventory
from orchestrator.controller.state import State
from orchestrator.errors import InputError, LabNotUp


def open_site(lab: str | None = None, inventory: str | None = None, db: str | None = None,
              enter: bool = True) -> Controller:
    """The controller for a real site (``inventory`` + ``db``) or for a lab (by name).

    For a lab, ``enter`` moves this process into the lab's management namespaces first, so that
    the controller sees and reaches exactly what a management server of a real site would (a
    test process that has placed its thread there itself passes False)."""
    if inventory:
        if not db:
            raise InputError("--inventory needs --db (the controller's state database)")
        return Controller(load_inventory(inventory), State(Path(db)))
    from orchestrator.lab.lab import open_lab

    site = open_lab(lab)
    if not site.is_up() or not site.inventory_file.exists():
        raise LabNotUp(f"lab '{site.name}' is not up: run 'vnfctl lab up' first")
    if enter:
        site.enter_mgmt()
    return Controller(load_inventory(site.inventory_file), State(site.state_dir / "controller.db"))
