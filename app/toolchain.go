package app

import "go/version"

// Toolchain is the Go release tollgate is built and tested with: go.mod's
// toolchain line (TestToolchainMatchesGoMod keeps the two equal). The
// Makefile and scripts build with it; a plain `go build` under
// GOTOOLCHAIN=local uses whatever Go is installed.
const Toolchain = "go1.27.3"

// OlderGoAdvice is what a build by an older Go than Toolchain means and
// what to do about it, for the warnings of `serve` and `tollgate version`.
const OlderGoAdvice = "the standard library's vulnerabilities fixed since are in this binary; build with `make build` (README, Go toolchain)"

// OlderGo returns built (a runtime.Version()) when it is a Go release
// older than Toolchain, else "": such a binary carries the standard
// library's vulnerabilities fixed since, which `make vulncheck` judges
// for Toolchain only. Development builds ("devel …") are not judged.
func OlderGo(built string) string {
	if !version.IsValid(built) || version.Compare(built, Toolchain) >= 0 {
		return ""
	}
	return built
}
