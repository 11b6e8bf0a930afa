# Helpers shared by tests/slurm/up.sh and down.sh (sourced, not run).

# Marker line in every file up.sh writes outside its state dir; down.sh removes only marked files.
MARK="# written by lfsgan tests/slurm/up.sh; removed by tests/slurm/down.sh"

# alive PID: true while the process runs. A daemon is reparented to PID 1, which may reap it
# late, so a zombie counts as gone.
alive() { local st; st="$(ps -o stat= -p "$1" 2>/dev/null)" && [ -n "$st" ] && [ "${st:0:1}" != Z ]; }

# running_pids NAME: PIDs of live (non-zombie) processes called exactly NAME.
running_pids() { local p; for p in $(pgrep -x "$1"); do alive "$p" && echo "$p"; done; return 0; }
