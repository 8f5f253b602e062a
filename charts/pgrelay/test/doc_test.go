// Package test checks the pgrelay Helm chart without a cluster: it lints and
// renders the chart with the Helm Go SDK (the same code as `helm lint` and
// `helm template`) for the default values and every ci/*-values.yaml
// scenario, decodes every rendered object strictly against the Kubernetes API
// types, checks the values schema, and runs the real relay and edge binaries
// with exactly the env, args, ports and probes the chart renders.
//
// It is a separate Go module so that the Helm SDK and client-go stay out of
// pgrelay's own go.mod; scripts/test.sh runs it. The wiring test needs the
// PostgreSQL and Redis that scripts/test.sh finds or starts
// (PGRELAY_TEST_DATABASE_URL, PGRELAY_TEST_REDIS_URL).
package test
