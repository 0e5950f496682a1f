"""Action plugin gb10.cluster.stage_follow: follow a long async job, one progress line per round.

Thin: the rounds, the reading of the job and progress files and the line are in
module_utils/stage_follow.py (unit-tested). Here: the arguments, one shell command per round on the node
that runs the stream (the task is delegated there), Display for the lines, and at the end the job's
result as ansible.builtin.async_status returns it.

Why an action plugin (roles/weights/tasks/poll.yml used to include itself once per round): a loop in
Python does not grow with the rounds, so a copy of any length ends (an include per round crashed
ansible-core with a RecursionError after about 250 rounds, a copy of about 25 minutes); `until`/`retries`
would print "FAILED - RETRYING" every round. A round costs one shell command, not a module run.
"""
from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.gb10.cluster.plugins.module_utils.stage_follow import (
    FINISHED,
    GRACE_S,
    LINE_FORMATS,
    MISSING,
    RUNNING,
    TIMEOUT,
    follow,
    round_command,
)

display = Display()

# Mirrored by DOCUMENTATION in plugins/modules/stage_follow.py (tests/unit/plugins/modules/test_stage_follow.py).
ARGUMENT_SPEC = {
    "jid": {"type": "str", "required": True},
    "progress": {"type": "str", "required": True},
    "label": {"type": "str", "required": True},
    "interval": {"type": "float", "default": 5.0},
    "timeout": {"type": "float", "default": 86400.0},
    "format": {"type": "str", "default": "staging", "choices": sorted(LINE_FORMATS)},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True  # reads two files on the node, changes nothing

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        # Where async_status looks for the job (the shell's async_dir, as the become user sees it).
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        job_path = self._connection._shell.join_path(async_dir, args["jid"])
        command = round_command(job_path, args["progress"])

        def read_round() -> str:
            return self._low_level_execute_command(command).get("stdout", "")

        def async_status() -> dict:
            try:
                return self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                            module_args={"jid": args["jid"], "mode": "status", "_async_dir": async_dir})
            finally:
                self._remove_tmp_path(self._connection._shell.tmpdir)

        def job_status() -> str:
            return FINISHED if async_status().get("finished") else RUNNING

        outcome = follow(read_round, display.display, args["label"], args["interval"], args["timeout"] + GRACE_S,
                         job_status=job_status, line_for=LINE_FORMATS[args["format"]])
        result.update(changed=False, rounds=outcome.rounds, progress_line=outcome.line, ansible_job_id=args["jid"])
        if outcome.state == TIMEOUT:
            result.update(failed=True, finished=False, msg=(
                f"{args['label']}: after {args['timeout'] + GRACE_S:.0f} s ({outcome.rounds} rounds) the stream's job "
                f"{args['jid']} still reads as running in {job_path}, past its limit of {args['timeout']:.0f} s: its "
                "node probably rebooted or the job was killed; run again (the chunks already written are kept)."))
            return result
        if outcome.state == MISSING:
            result.update(finished=True, stdout="", stderr=f"the stream's job file {job_path} is gone")
        # The job's own record, read as ansible.builtin.async_status reads it (failed or not: the role's
        # assert says why a copy did not complete, node by node).
        result.update(async_status())
        # Not failed even when the job failed or exited non-zero (a non-zero rc alone would fail the task).
        result.update(failed=False, changed=False, finished=True)  # FINISHED or MISSING: the stream has ended
        return result
