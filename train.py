"""Train LSTA (placeholder until the trainer lands): parses arguments and loads the config."""
import argparse

from utils.cli import add_config_args, load_config, save_run_config
import os


def main() -> None:
    parser = argparse.ArgumentParser(description="Train LSTA.")
    add_config_args(parser)
    cfg = load_config(parser.parse_args())
    save_run_config(cfg, os.path.join(cfg.DIR_RESULT, "config.json"))


if __name__ == "__main__":
    main()
