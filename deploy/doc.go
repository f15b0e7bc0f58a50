// Package deploy holds postbud's deployment files, not code: the container
// image (Dockerfile), a compose file, Redis's production configuration
// (redis.conf), Kubernetes manifests (kubernetes/) and a systemd unit
// (systemd/) and a monitoring kit (monitoring/: Prometheus alert rules and a
// Grafana dashboard). README.md in this directory says how to use each.
//
// Its only Go is the test that keeps those files true to the code: the
// POSTBUD_* environment of each deployment is loaded with config.Load
// itself, and the ports, probe paths, shutdown grace periods, secret file
// paths and Redis settings are checked against what the code does and
// requires (docs/design.md, "Redis"); every series the monitoring kit
// queries is checked against what postbud's /metrics serves. Change a default or a variable in
// config and this test says which deployment file to change with it.
// Linting the files in general is left to real tools in .ci/run.
package deploy
