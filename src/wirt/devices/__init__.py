"""devices layer of wirt (see DESIGN.md)."""
