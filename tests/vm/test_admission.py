"""Admission arithmetic with a fake host inventory, refusal messages, settings parsing."""

from __future__ import annotations

import pytest

from wirt.errors import WirtError
from wirt.vm.admission import AdmissionError, Demand, admit
from wirt.vm.inventory import HostInventory, host_inventory
from wirt.vm.settings import Settings, load_settings

G = 1 << 30
M = 1 << 20
HOST = HostInventory(cores=4, memory_total=8 * G, memory_available=6 * G, disk_free=100 * G)
S = Settings(memory_reserve=1 * G, memory_overcommit=1.0, cpu_overcommit=2.0, vm_overhead=256 * M,
             thin_provisioning=False)


def test_fits():
    admit(Demand("a", 2 * G, 2), [Demand("b", 2 * G, 4)], HOST, S)


def test_memory_short_by():
    # budget 7G; running 4G + 256M; new 3G + 256M -> 7.5G, short by 512M
    with pytest.raises(AdmissionError) as e:
        admit(Demand("a", 3 * G, 1), [Demand("b", 4 * G, 1)], HOST, S)
    msg = str(e.value)
    assert "memory" in msg and "short by 512 MiB" in msg and "\n" not in msg


def test_memory_overcommit_allows_it():
    admit(Demand("a", 3 * G, 1), [Demand("b", 4 * G, 1)], HOST, Settings(**{**S.__dict__, "memory_overcommit": 1.5}))


def test_cpu_short_by():
    with pytest.raises(AdmissionError) as e:
        admit(Demand("a", 1 * G, 3), [Demand("b", 1 * G, 6)], HOST, S)  # 9 > 4 x 2
    assert "CPUs" in str(e.value) and "short by 1" in str(e.value)


def test_disk_thin_or_thick():
    vm = Demand("a", G, 1, disk_growth=120 * G)
    with pytest.raises(AdmissionError, match="short by 20 GiB"):
        admit(vm, [], HOST, S)
    admit(vm, [], HOST, Settings(**{**S.__dict__, "thin_provisioning": True}))


def test_all_shortfalls_in_one_line():
    with pytest.raises(AdmissionError) as e:
        admit(Demand("a", 100 * G, 100, 1000 * G), [], HOST, S)
    msg = str(e.value)
    assert "memory" in msg and "CPUs" in msg and "disk" in msg and "\n" not in msg


def test_host_inventory_is_sane(tmp_path):
    inv = host_inventory(tmp_path)
    assert inv.cores >= 1 and inv.memory_total > 0 and inv.disk_free > 0


def test_settings(tmp_path):
    assert load_settings(tmp_path) == Settings()
    (tmp_path / "config.toml").write_text('[resources]\nmemory_reserve = "2G"\ncpu_overcommit = 8\n'
                                          'thin_provisioning = true\n')
    s = load_settings(tmp_path)
    assert s.memory_reserve == 2 * G and s.cpu_overcommit == 8.0 and s.thin_provisioning
    for bad in ('memory_reserve = "lots"', "cpu_overcommit = -1", "thin_provisioning = 1", "nonsense = 1",
                "io_weight = 0"):
        (tmp_path / "config.toml").write_text(f"[resources]\n{bad}\n")
        with pytest.raises(WirtError) as e:
            load_settings(tmp_path)
        assert "config.toml" in str(e.value) and "\n" not in str(e.value)


def test_start_refused_with_fake_inventory(tiny_vm):
    small = HostInventory(cores=1, memory_total=256 * M, memory_available=256 * M, disk_free=G)
    with pytest.raises(AdmissionError) as e:
        tiny_vm.start(inventory=small)
    assert "memory" in str(e.value) and "short by" in str(e.value)
    assert not tiny_vm.paths.run.exists()
    assert tiny_vm.status().state == "stopped"
