"""Confinement of a VM: which host files it may open (`paths`), and, in the VM process after
set-up, a seccomp filter and a Landlock ruleset that make the kernel enforce it (docs/security.md).

This package sits at the bottom of the layers (like wirt.fileio): storage/ and vm/ both use it.
"""
