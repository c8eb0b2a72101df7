"""Training and benchmarking the editing model, beside the stages (imports the core, never a stage).

    run_configs.py        the `run_config` partitions: one training configuration file each (training/*.yaml)
    trainer.py            how training runs here: the machine's settings and the live Pipes client
    training_process.py   the process the trainer launches (plain python, accelerate launch or torchrun)
    editor_checkpoint.py  asset: the trained editor of one run_config, with its data manifest and loss curve
    editor_outputs.py     asset: that editor's edits of the bench sources
"""
