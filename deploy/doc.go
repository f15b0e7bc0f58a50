// Package deploy holds postbud's deployment files, not code: the container
// image (Dockerfile), a compose file, Redis's production configuration
// (redis.conf), Kubernetes manifests (kubernetes/) and a systemd unit
// (systemd/). README.md in this directory says how to use each.
//
// Its only Go is the test that keeps those files true to the code: every
// POSTBUD_* variable they set is one config.Load knows and accepts with
// their values, and the ports, probe paths, shutdown grace periods, secret
// file paths and Redis settings agree with the code's defaults and
// DESIGN.md. Change a default or a variable in config and this test says
// which deployment file to change with it.
package deploy
