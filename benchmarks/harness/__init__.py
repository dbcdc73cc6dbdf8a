"""The benchmark harness: what every comparison script shares, whatever it compares.

- :mod:`~benchmarks.harness.cli`: one argparse convention (``--quick``, ``--out``, and the
  dataset and feature-store options) and the folders it implies.
- :mod:`~benchmarks.harness.arms`: named configurations (arms) and choosing them.
- :mod:`~benchmarks.harness.measure`: wall time with the load average, peak RSS of a child
  process (``os.wait4``, or before a Python child's teardown) or of this one.
- :mod:`~benchmarks.harness.pages`: CSV / Markdown / PNG output, written atomically, with the
  provenance lines of every page.
- :mod:`~benchmarks.harness.cache`: the JSON result cache shared by the scripts.

Comparison-specific helpers (feature stores, fitting and scoring a spec, few-shot rules) live in
:mod:`benchmarks.common`; each comparison is one module, ``python -m benchmarks.<name>``.
"""

from benchmarks.harness.arms import Arm, arm_table, choose_arms
from benchmarks.harness.cache import cache_file, cached, read_json, write_json
from benchmarks.harness.cli import (DATA_DIR, DEFAULT_DATASETS, DEFAULT_IMAGE_SIZE,
                                    DEFAULT_MODEL, FEATURES_DIR, QUICK_RESULTS_DIR, REPO,
                                    RESULTS_DIR, add_datasets, add_no_umap, base_parser, choose,
                                    names_list, parse_args, parser)
from benchmarks.harness.measure import (MIB, Measured, current_rss_mib, format_load,
                                        load_average, measure, own_peak_rss_mib, peak_rss_mib,
                                        python_peak_rss_mib)
from benchmarks.harness.pages import (Outputs, command_line, figure, finish_panels, fmt,
                                      git_commit, log, machine, markdown_table, outputs,
                                      provenance, save_figure, today, write_csv, write_page,
                                      write_text)

__all__ = ["Arm", "DATA_DIR", "DEFAULT_DATASETS", "DEFAULT_IMAGE_SIZE", "DEFAULT_MODEL",
           "FEATURES_DIR", "MIB", "Measured", "Outputs", "QUICK_RESULTS_DIR", "REPO",
           "RESULTS_DIR", "add_datasets", "add_no_umap", "arm_table", "base_parser",
           "cache_file", "cached", "choose", "choose_arms", "command_line",
           "current_rss_mib", "figure", "finish_panels", "fmt", "format_load",
           "git_commit", "load_average", "log", "machine", "markdown_table", "measure",
           "names_list", "outputs", "own_peak_rss_mib", "parse_args", "parser",
           "peak_rss_mib", "provenance", "python_peak_rss_mib", "read_json",
           "save_figure", "today", "write_csv", "write_json", "write_page", "write_text"]
