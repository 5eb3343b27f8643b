// The probe fixture's module for Debian's go1.19: the same main.go (../probe-fixture/main.go,
// copied next to this file by tests/tests/probes.rs) against an x/net that still builds with
// go1.19 and lies in the header hooks' verified range.
module apiscope.test/probe-fixture

go 1.19

require golang.org/x/net v0.17.0

require golang.org/x/text v0.13.0 // indirect
