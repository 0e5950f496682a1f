"""GPU metrics for the node exporter's textfile collector, from `nvidia-smi --query-gpu` (the rack only).

Plain logic, no Ansible imports. roles/monitoring copies this file next to the node's
gb10-gpu-metrics script (a systemd timer runs it): `nvidia-smi` is asked for a few fields as CSV, and
`render` turns its answer into Prometheus text that node_exporter serves with the node's other metrics.
GB10 has no framebuffer of its own (nvidia-smi says "[N/A]" / "[Not Supported]" for memory; the
node's MemAvailable is the memory figure, from node_exporter), so no memory field is asked; a field a
driver does not support is left out, never reported as 0.
"""
from __future__ import annotations

FIELDS = ("index", "uuid", "name", "utilization.gpu", "temperature.gpu", "power.draw", "clocks.sm")
# nvidia-smi field -> (metric, help, factor to the metric's base unit)
METRICS = {
    "utilization.gpu": ("gb10_gpu_utilization_ratio", "Share of the last sample period the GPU was busy (0 to 1).", 0.01),
    "temperature.gpu": ("gb10_gpu_temperature_celsius", "GPU temperature.", 1.0),
    "power.draw": ("gb10_gpu_power_watts", "GPU power draw.", 1.0),
    "clocks.sm": ("gb10_gpu_sm_clock_hertz", "SM clock.", 1e6),
}
UNSUPPORTED = ("[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]", "")


def nvidia_smi_argv(binary: str = "nvidia-smi") -> list[str]:
    return [binary, f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _number(text: str) -> float | None:
    if text.strip().lower() in UNSUPPORTED:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def render(stdout: str, rc: int) -> str:
    """Prometheus text for one nvidia-smi run: gb10_gpu_up (1 when it answered with at least one GPU),
    then one sample per GPU and supported field."""
    rows = []
    if rc == 0:
        for line in stdout.splitlines():
            cells = [c.strip() for c in line.split(",")]
            if len(cells) == len(FIELDS) and cells[0].isdigit():
                rows.append(dict(zip(FIELDS, cells)))
    out = ["# HELP gb10_gpu_up 1 when nvidia-smi answered with at least one GPU.", "# TYPE gb10_gpu_up gauge",
           f"gb10_gpu_up {1 if rows else 0}"]
    for field, (metric, text, factor) in METRICS.items():
        samples = []
        for row in rows:
            value = _number(row[field])
            if value is not None:
                labels = f'gpu="{row["index"]}",uuid="{_label(row["uuid"])}",name="{_label(row["name"])}"'
                samples.append(f"{metric}{{{labels}}} {value * factor:g}")
        if samples:
            out += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge", *samples]
    return "\n".join(out) + "\n"
