"""``neurostim config show`` and ``neurostim config check FILE``."""

from __future__ import annotations

import argparse
import sys

from controller.config import ConfigError, ControllerConfig, default_config_toml, load_config
from firmware_bridge.exit_codes import ExitCode


def config_show(args: argparse.Namespace) -> int:
    """Print the complete default configuration as commented TOML."""
    sys.stdout.write(default_config_toml())
    return 0


def config_check(args: argparse.Namespace) -> int:
    """Validate ``args.file``: a summary and 0, or every problem (field, value, range) and 2."""
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"neurostim config check: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"ok: {args.file}")
    print(summarize_config(config))
    return 0


def summarize_config(config: ControllerConfig) -> str:
    """A few lines naming what the configuration will do."""
    env, pol, feat = config.envelope, config.policy, config.features
    therapy = pol.stimulation
    fallback = "off"
    if env.fallback.enabled:
        fb = env.fallback
        fallback = f"{fb.amplitude_ma:g} mA, {fb.pulse_width_us} µs, {fb.frequency_hz:g} Hz"
    lines = [
        f"policy     {pol.name}  (therapy {therapy.amplitude_ma:g} mA, "
        f"{therapy.pulse_width_us} µs, {therapy.frequency_hz:g} Hz)",
        f"envelope   {env.min_amplitude_ma:g}-{env.max_amplitude_ma:g} mA, "
        f"{env.min_pulse_width_us}-{env.max_pulse_width_us} µs, "
        f"{env.min_frequency_hz:g}-{env.max_frequency_hz:g} Hz, "
        f"<= {env.max_charge_per_phase_uc:g} µC/phase, "
        f"<= {env.max_charge_density_uc_per_cm2:g} µC/cm², Shannon k <= {env.shannon_k_max:g}",
        f"ramps      up {env.ramp_up_ma_per_s:g} mA/s, down {env.ramp_down_ma_per_s:g} mA/s "
        f"(min with the device's), >= {env.min_change_interval_s:g} s between changes",
        f"budgets    session <= {env.max_session_s:g} s, <= {env.max_sessions_per_24h} "
        f"sessions, {env.daily_on_time_budget_s:g} s and {env.daily_charge_budget_uc:g} µC "
        f"per 24 h; impedance {env.impedance_min_ohm:g}-{env.impedance_max_ohm:g} Ω; "
        f"fallback {fallback}",
        f"features   {feat.window_s:g} s window, {feat.hop_s:g} s hop, "
        f"bands {', '.join(feat.bands_hz)}",
        f"detector   {len(config.detector.features)} signature features, thresholds "
        f"{config.detector.lower_threshold:g}/{config.detector.upper_threshold:g}",
        "the device's hard limits are intersected at connect (docs/controller.md)",
    ]
    return "\n".join(lines)


def register_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config show`` and ``config check FILE`` to the top-level subcommands."""
    config = sub.add_parser(
        "config",
        help="show the default configuration or check a configuration file",
        description="The controller's TOML configuration (docs/configuration.md).",
    )
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show", help="print the complete default configuration as commented TOML"
    )
    show.set_defaults(handler=config_show)
    check = actions.add_parser(
        "check",
        help="validate a configuration file (exit 2 naming field, value and allowed range)",
    )
    check.add_argument("file", metavar="FILE", help="TOML configuration file")
    check.set_defaults(handler=config_check)
