"""images layer of wirt (see DESIGN.md)."""
