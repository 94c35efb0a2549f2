"""vm layer of wirt (see DESIGN.md)."""
