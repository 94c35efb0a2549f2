"""netback layer of wirt (see DESIGN.md)."""
