module apiscope.test/probe-fixture-bundled

go 1.25.0
