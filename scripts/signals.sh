# run_forwarding, sourced by scripts/common.sh and the scripts that run others (reproduce_*.sh, testbed_demo.sh).

# run_forwarding COMMAND...: run COMMAND (train.py, or a script that runs it) so that the stop signals sent to
# this script reach it. bash runs a trap only once the foreground command has ended: a SIGTERM (timeout,
# Slurm, kill) would end the script and leave train.py running on. So COMMAND runs in the background while
# the script waits, and TERM, HUP, USR1 and USR2 are passed on to it: train.py saves a resumable state and
# stops (TRAIN.STOP_SIGNALS), then the script stops too, with 128 + the signal's number, and runs nothing
# more. Ctrl-C reaches COMMAND from the terminal as before (SIGINT and SIGQUIT, which bash has a background
# command ignore, are given back their defaults). Otherwise returns COMMAND's exit status.
run_forwarding() {
    local child received="" sig rc=0
    ( trap - INT QUIT; exec "$@" ) &
    child=$!
    for sig in TERM HUP USR1 USR2; do
        # shellcheck disable=SC2064
        trap "received=$sig; kill -$sig $child 2>/dev/null" "$sig"
    done
    wait "$child" || rc=$?
    while [ -n "$received" ] && kill -0 "$child" 2>/dev/null; do  # the signal cut the wait short
        rc=0
        wait "$child" || rc=$?
    done
    trap - TERM HUP USR1 USR2
    [ -z "$received" ] || exit $((128 + $(kill -l "$received")))  # train.py said where it stopped
    return "$rc"
}
