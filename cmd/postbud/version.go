package main

import (
	"runtime/debug"
)

// build describes the running binary, from the Go toolchain's build
// information.
type build struct {
	Version, Revision, Time, GoVersion string
}

// readBuild returns the binary's module version (or "(devel)"), its VCS
// revision and commit time (with "+dirty" when built from a modified
// tree; "unknown" without VCS data) and the Go version.
func readBuild() build {
	b := build{Version: "(devel)", Revision: "unknown", Time: "unknown", GoVersion: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.GoVersion = bi.GoVersion
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "+dirty"
	}
	return b
}
