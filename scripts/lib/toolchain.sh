# Sourced by the scripts (after they cd to the repository's root): builds
# and tests use the Go toolchain that go.mod's `toolchain` line names, the
# one the vulnerability check passes on, also on machines whose Go sets
# GOTOOLCHAIN=local (which ignores that line). The go command fetches it
# from the module proxy once (~76 MB). An explicit GOTOOLCHAIN in the
# environment wins: GOTOOLCHAIN=local builds with the machine's own Go.
if [ -z "${GOTOOLCHAIN:-}" ]; then
	_tg_toolchain=$(awk '$1 == "toolchain" { print $2 }' go.mod)
	if [ -n "$_tg_toolchain" ]; then export GOTOOLCHAIN="$_tg_toolchain+auto"; fi
	unset _tg_toolchain
fi
