"""The C-ABI oracle: Cranelift checked against the platform C compiler.

For a signature with a C counterpart (`declare`), a recorder callee and a
caller are written in CLIF (`clif`) and in C (`csource`), the C is compiled
by the target's real compiler (`build`), both are linked into one image and
run in the four pairings (`check`): C calls Cranelift and Cranelift calls C
are the checks; Cranelift calls Cranelift and C calls C check the glue. Every
value is graffiti (`layout`), so a misplaced byte names where it came from."""
