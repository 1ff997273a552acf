# Sourced by every bench script: how the seedbucket servers of a benchmark run. Like the peer
# tools they are compared with (nginx runs with access_log off), without the access log, and
# without the admin listener (web console, metrics; on by default at 127.0.0.1:9001): what its
# per-request recording costs is measured apart (docs/benchmarks.md). A run that reads /metrics
# gives --admin-listen itself.
export SEEDBUCKET_ACCESS_LOG=off
export SEEDBUCKET_ADMIN_LISTEN=off
