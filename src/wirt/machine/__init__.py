"""machine layer of wirt (see DESIGN.md)."""
