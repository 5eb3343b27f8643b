module apiscope.test/probe-fixture

go 1.25.0

// The x/net kube-apiserver v1.37 is built with (and inside the header hooks' verified range).
require golang.org/x/net v0.57.0

require golang.org/x/text v0.40.0 // indirect
