"""What every study is built on: its typed settings (config), its claims (claims),
training on the engine (training), probes, the output folder and report (report),
grid search (search), plots, and the study itself with its command line (study)."""
