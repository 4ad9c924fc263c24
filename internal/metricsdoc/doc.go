// Package metricsdoc keeps the operator documentation in step with the
// code. It has no code of its own; its tests
//
//   - build each binary's components on a recording registry, the way the
//     daemons wire them, and compare the metrics with docs/metrics.md and
//     the Grafana dashboard (deploy/grafana/dashboards/triggerflow.json);
//   - check that every test docs/guarantees.md cites as proof exists;
//   - run every `triggerflow` command line of the docs through the CLI's
//     command tree and flag parser;
//   - compile and run the code example of docs/migration.md.
package metricsdoc
