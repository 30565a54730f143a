"""Built-in simulation scenarios (TOML files, loaded by simulator.physiology.scenario)."""
