"""The hypervisor layer (DESIGN.md "Layers"): VM files, resources, one OS process per VM.

    schema.py     vm.toml as validated dataclasses        store.py    $WIRT_HOME/vms/NAME, atomic writes
    settings.py   config.toml (overcommit, reserve, ...)  locks.py    per-VM flock
    inventory.py  host cores/memory/disk                  admission.py  may this VM start?
    limits.py     cgroup v2 / rlimit / CPU affinity       disks.py    create, grow, measure disks
    control.py    JSON-lines control socket               service.py  the commands a VM serves
    consolehub.py console log, ring buffer, attachments   runner.py   the only adapter to Machine
    process.py    `python -m wirt.vm.process NAME`        status.py   state from files and processes
    api.py        `VM`: the Python API (the CLI's backend) top.py     `wirt top` sampling
"""
