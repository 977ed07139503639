"""What the scripts run inside a private network namespace (netns_*.py) share: running a
setup command, and stopping the sockflow they started, by its pid."""
import os
import signal
import subprocess


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(p):
    """SIGTERM to p (SIGKILL if it is still there 5 s later); its standard error, when it
    was a pipe."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        _, err = p.communicate(timeout=5)
    return err
