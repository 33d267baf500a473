"""The host bring-up's pure parts: what it writes on a host, and what it refuses."""

import pytest

from orchestrator.agent import bringup
from orchestrator.errors import InputError


def test_core_lists_in_the_usual_forms():
    assert bringup.parse_cores("8-11,14") == [8, 9, 10, 11, 14]
    assert bringup.parse_cores("1") == [1]
    assert bringup.parse_cores("3,1,1-2") == [1, 2, 3]
    for bad in ("", "x", "5-3", "-1", "1,,a"):
        with pytest.raises(InputError, match="--dp-cores"):
            bringup.parse_cores(bad)


def test_agent_config_names_what_the_agent_needs_and_the_keys_it_trusts():
    doc = bringup.agent_config("a", "http://10.10.5.2:8780/", ["vnfctl-ed25519 AAAA k1"], "ens2f1", [8, 9])
    assert doc["host"] == "a" and doc["store_url"] == "http://10.10.5.2:8780"
    assert doc["trusted_store_keys"] == ["vnfctl-ed25519 AAAA k1"] and doc["dp_cores"] == [8, 9]
    assert doc["image_dir"] == "/var/lib/vnfctl/images" and doc["state_dir"] == "/var/lib/vnfctl/agent"


def test_sshd_gets_only_the_agent_subsystem_and_the_unit_keeps_dps_alive():
    line = [ln for ln in bringup.sshd_dropin("/opt/vnfctl/bin/python").splitlines() if not ln.startswith("#")]
    assert line == ["Subsystem vnfctl-agent /opt/vnfctl/bin/python -m orchestrator.agent.bridge"]
    unit = bringup.systemd_unit("/opt/vnfctl/bin/python")
    assert "ExecStart=/opt/vnfctl/bin/python -m orchestrator.agent.daemon --config /etc/vnfctl/agent.yaml" in unit
    assert "KillMode=process" in unit      # a stopped agent must not take its DPs with it


def test_a_sshd_config_without_the_dropin_directory_is_refused(tmp_path):
    good = tmp_path / "good"
    good.write_text("Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n")
    bringup._check_sshd_includes_dropins(good)
    bad = tmp_path / "bad"
    bad.write_text("Port 22\n# Include /etc/ssh/sshd_config.d/*.conf\n")
    with pytest.raises(bringup.BringUpError, match="Include /etc/ssh/sshd_config.d"):
        bringup._check_sshd_includes_dropins(bad)


def test_agent_config_carries_the_core_share_and_the_agent_reads_it(tmp_path):
    from orchestrator.agent.daemon import AgentConfig

    doc = bringup.agent_config("a", "http://s:8780", ["k"], "ens2f1", [8, 9], dp_core_share=4)
    assert doc["dp_core_share"] == 4
    path = tmp_path / "agent.yaml"
    path.write_text(__import__("yaml").safe_dump(doc))
    assert AgentConfig.load(path).dp_core_share == 4
    del doc["dp_core_share"]                      # a configuration written before sharing
    path.write_text(__import__("yaml").safe_dump(doc))
    assert AgentConfig.load(path).dp_core_share == 1


@pytest.mark.parametrize("share", [0, 65, True])
def test_bad_core_share_is_refused_before_anything_is_written(share, monkeypatch, tmp_path):
    monkeypatch.setattr(bringup.os, "geteuid", lambda: 0)
    (tmp_path / "ens2f1").mkdir()
    with pytest.raises(InputError, match="--dp-core-share must be a whole number from 1 to 64"):
        bringup.bring_up("a", "http://s:8780", ["k"], "ens2f1", [0], sys_class_net=tmp_path, dp_core_share=share)
