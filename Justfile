# Every daily task. `./dev RECIPE` works without just installed (it sets up .venv).
set shell := ["bash", "-uc"]
set positional-arguments

py := ".venv/bin/python"

# list the recipes
default:
    @just --list

# the whole stack (PostgreSQL, Redis, Kafka, services, nginx) with a demo quiz
[no-exit-message]
up *args:
    @{{py}} -m infra.stack up "$@"

# stop everything `up` started
down:
    {{py}} -m infra.stack down

# every test, on an isolated stack with its own ports (torn down afterwards)
test *args:
    {{py}} -m infra.stack test "$@"

# only the fast tests that need no server (scoring, ranking, contracts)
unit *args:
    {{py}} -m pytest -m "not stack" "$@"

# PostgreSQL, Redis and Kafka only
[no-exit-message]
infra-up:
    @{{py}} -m infra.stack infra-up

# stop PostgreSQL, Redis and Kafka
infra-down:
    {{py}} -m infra.stack infra-down

# which processes run
status:
    {{py}} -m infra.stack status

# last log lines of every process, or of NAME (e.g. `just logs quiz-1`)
logs *names:
    {{py}} -m infra.stack logs "$@"

# restart one process of the running stack (e.g. `just restart consumer-1`)
restart *names:
    {{py}} -m infra.stack restart "$@"

# print the QUIZ_* variables of the running stack (`eval "$(just env)"`)
env:
    @{{py}} -m infra.stack env

# check the rendered nginx config with `nginx -t`
nginx-test:
    {{py}} -m infra.stack nginx-test

# regenerate docs/ (OpenAPI per service, AsyncAPI-style events schema)
schemas:
    {{py}} -m infra.schemas docs

# lint, format check and type check: every Python folder (ruff, mypy), the web client
# (ESLint, tsc --checkJs through JSDoc; web/lint.sh installs the pinned tools)
lint:
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    sh web/lint.sh

# format the code
fmt:
    .venv/bin/ruff format .
    .venv/bin/ruff check --fix .

# Kafka topics of the running stack
kafka-topics:
    eval "$({{py}} -m infra.stack env)" && {{py}} -m services.common.kafka list-topics

# Kafka UI in the terminal (kaskade): topics, groups, lag; `just kafka-ui SCORE_CHANGE`: messages
kafka-ui *args:
    {{py}} -m infra.stack kafka-ui "$@"

# redis-cli on the running stack's Redis
redis-cli *args:
    eval "$({{py}} -m infra.stack env)" && redis-cli -u "$QUIZ_REDIS_URL" "$@"

# regenerate infra/nginx/nginx.compose.conf (the gateway of infra/compose.yaml)
compose-nginx:
    {{py}} -m infra.stack compose-nginx

# fault scenarios (consumer SIGKILL, Kafka down 30 s, Redis restart/flush, quiz+socket.io kill,
# duplicate answers) on an isolated stack; writes reports/chaos.md (`--cluster`: chaos-cluster)
chaos *args:
    if [ "${1:-}" = "--cluster" ]; then shift; {{just_executable()}} chaos-cluster "$@"; else QUIZ_CHAOS_FULL=1 QUIZ_CHAOS_REPORT=reports/chaos.md {{py}} -m infra.stack test tests/test_faults.py -v "$@"; fi

# one Locust scenario headless against the running stack (classroom, stadium, many-rooms,
# self-paced, spike); HTML + CSV in reports/locust/ (e.g. `just load stadium --players 200`)
load scenario="classroom" *args:
    {{py}} -m loadtests.load "$@"

# Locust's web UI on http://127.0.0.1:8089 against the running stack
load-ui *args:
    {{py}} -m loadtests.load --ui "$@"

# the benchmark: own stack (QUIZ_PROCS_* processes), floors, every scenario; writes
# reports/bench.{json,md} and reports/bench-latency.png (`--use-running`, `--profile`)
bench *args:
    {{py}} -m loadtests.bench "$@"

# classroom + many-rooms at reduced size, under 3 minutes
bench-quick *args:
    {{py}} -m loadtests.bench --quick "$@"

# a local Redis Cluster (3 primaries + 1 replica each) and three Kafka brokers (KRaft,
# replication factor 3) in .run/cluster; `eval "$(just cluster-env)"` points `./dev up`,
# `./dev test` or `just bench` at them
cluster-up:
    {{py}} -m infra.cluster up

# stop the cluster `cluster-up` started (by pid)
cluster-down:
    {{py}} -m infra.cluster down

# the QUIZ_* variables that point a stack at the cluster of `cluster-up`
cluster-env:
    @{{py}} -m infra.cluster env

# node-loss scenarios (a Kafka broker, a Redis primary SIGKILLed mid-game) on a cluster
# and a stack of their own, full sizes; writes reports/chaos-cluster.md
chaos-cluster *args:
    QUIZ_CHAOS_FULL=1 QUIZ_CHAOS_REPORT=reports/chaos-cluster.md {{py}} -m infra.cluster test tests/test_on_cluster.py -v "$@"
