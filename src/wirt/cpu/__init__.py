"""cpu layer of wirt (see DESIGN.md)."""
