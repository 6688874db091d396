"""The CLIF delta reducer: a filetest model, validity-keeping edits, passes
as plain functions over one problem object, and the same-bucket test."""
