"""`mtcli train`: multitask fine-tuning of the shared encoder."""

from pathlib import Path

import typer

from mtcli.train.config import PHASE_LR, TrainConfig, field_of_flag

EPILOG = """Examples:

  mtcli train                                   # the default recipe on the bundled data

  mtcli train --sampler triple-batch --combine pcgrad --epochs 1

  mtcli train --sampler annealed --combine weighted --task-weights sst=0.5,para=1,sts=1

  mtcli train --combine upgrad            # or mgda, cagrad:c=0.4, nash-mtl, imtl-g, aligned-mtl, dualproj, ...

  mtcli train --upsample sst=3,para=1,sts=4 --encoding para=cross,sts=cross

  mtcli train --tasks examples/cs224n-cfimdb.toml          # your own tasks, declared in a TOML file

  mtcli train --simcse 0.1 --mnrl 0.5 --cosine-embedding-loss --pretrain-epochs 1 --epochs 4

  mtcli train --teacher export-mpnet --name student        # distil a teacher into the student (BAM!)

  mtcli train --max-steps 50 --limit 500 --name quick      # a quick look

  mtcli train --save-every 200 --name long && mtcli train --resume runs/long   # continue after a kill

  mtcli train --config examples/recipe.toml --epochs 1     # a recipe file; flags given here win

  mtcli train --config runs/long/recipe.toml --name again  # every run writes its recipe: train it again
"""


def train(
    ctx: typer.Context,
    sampler: str = typer.Option(TrainConfig.sampler, help="NAME[:key=value,...]: proportional | temperature (tau=2) | "
                                 "annealed (start=1.0,end=0.2) | round-robin | triple-batch"),
    combine: str = typer.Option(TrainConfig.combine, help="The multitask method, NAME[:key=value,...], e.g. cagrad:c=0.4, "
                                "famo:lr=0.025, graddrop; `mtcli info` lists every method by family, with its "
                                "parameters"),
    task_weights: str = typer.Option(None, "--task-weights", help="Fixed per-task gradient weights for --combine "
                                     "weighted, e.g. sst=0.5,para=1,sts=1"),
    upsample: str = typer.Option(None, help="Integer repeat factors per dataset, e.g. sst=3,para=1,sts=4"),
    phase: str = typer.Option(TrainConfig.phase, help=f"pretrain (frozen encoder, heads only, lr {PHASE_LR['pretrain']:g}) | finetune (all, lr {PHASE_LR['finetune']:g})"),
    tasks: Path = typer.Option(None, "--tasks", help="A TOML task file declaring 1 to 8 tasks (default: the built-in "
                                                     "CS224N tasks sst, para, sts)"),
    pooling: str = typer.Option(TrainConfig.pooling, help="cls | mean"),
    encoding: str = typer.Option(None, "--encoding", help="Override declared pair encodings, e.g. para=cross,sts=cross "
                                 "(classification pairs: cross | siamese; regression pairs: cross | cosine)"),
    simcse: float = typer.Option(TrainConfig.simcse, help="Weight of an unsupervised SimCSE loss on every batch's sentences (0: off)"),
    mnrl: float = typer.Option(TrainConfig.mnrl, help="Weight of a multiple-negatives ranking loss on the positives of binary "
                                         "pair tasks, e.g. paraphrases (0: off)"),
    cosine_embedding_loss: bool = typer.Option(False, "--cosine-embedding-loss",
                                               help="Add CosineEmbeddingLoss on the pair embeddings of pair tasks"),
    cosine_margin: float = typer.Option(TrainConfig.cosine_margin, "--cosine-margin", help="Margin of the cosine embedding loss"),
    teacher: str = typer.Option(None, "--teacher", help="Distil from teachers: PATH[,PATH...], each an `mtcli export` "
                                "folder (fastest), a checkpoint or a run folder; one teacher of every task, or one per "
                                "task (docs/distillation.md)"),
    teacher_annealing: str = typer.Option(TrainConfig.teacher_annealing, "--teacher-annealing",
                                          help="The gold label's weight in the targets: linear (0 -> 1 over the run, "
                                               "BAM's teacher annealing) | constant:LAMBDA"),
    teacher_temperature: float = typer.Option(TrainConfig.teacher_temperature, "--teacher-temperature",
                                              help="Divide a classification teacher's logits by T (> 1: softer targets)"),
    distill_embeddings: float = typer.Option(TrainConfig.distill_embeddings, "--distill-embeddings",
                                             help="Weight of an MSE of the student's sentence embeddings to the "
                                                  "teacher's (a learned projection where widths differ; 0: off)"),
    pretrain_epochs: int = typer.Option(TrainConfig.pretrain_epochs, "--pretrain-epochs", help=f"Train the heads alone (encoder frozen, lr {PHASE_LR['pretrain']:g}) "
                                        "for the first K epochs, then fine-tune"),
    epochs: int = typer.Option(TrainConfig.epochs, help="Epochs (see the sampler's steps per epoch, printed at start)"),
    batch_size: int = typer.Option(TrainConfig.batch_size, "--batch-size", help="Examples per task batch"),
    slots: int = typer.Option(None, help="Task batches per optimizer step, each task drawn by the sampler "
                                         "(default: one per task; 1 = one batch per step, sum/weighted only)"),
    group_by_length: bool = typer.Option(TrainConfig.group_by_length, "--group-by-length/--no-group-by-length",
                                         help="Batch rows of similar token length together (about half the padding "
                                              "compute; the same rows per epoch)"),
    lr: float = typer.Option(None, help="Peak learning rate of the encoder (default: by phase)"),
    head_lr: float = typer.Option(None, "--head-lr", help=f"Peak learning rate of the task heads (default {PHASE_LR['pretrain']:g})"),
    weight_decay: float = typer.Option(TrainConfig.weight_decay, "--weight-decay"),
    warmup: float = typer.Option(TrainConfig.warmup, help="Fraction of steps with linear warmup"),
    clip: float = typer.Option(TrainConfig.clip, help="Max gradient norm (0 disables clipping)"),
    dropout: float = typer.Option(TrainConfig.dropout, help="Dropout in the encoder and before the heads"),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after N optimizer steps"),
    limit: int = typer.Option(None, help="Use the first N rows of each task (train and dev)"),
    train_fraction: float = typer.Option(TrainConfig.train_fraction, "--train-fraction",
                                         help="Train on a seeded random share of each task's rows (tasks keep their "
                                              "relative sizes; dev sets stay whole)"),
    model_dir: Path = typer.Option(None, "--model-dir", help="HF-layout BERT or MPNet folder, or a backbone's name (mtcli backbones; default: all-MiniLM-L6-v2)"),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder with the CS224N files (default: bundled data/)"),
    out: Path = typer.Option(Path(TrainConfig.out), help="Folder that holds runs"),
    name: str = typer.Option(None, help="Run name (default: time-sampler-combine)"),
    seed: int = typer.Option(TrainConfig.seed),
    device: str = typer.Option(TrainConfig.device, help="auto | cpu | cuda"),
    eval_batch_size: int = typer.Option(TrainConfig.eval_batch_size, "--eval-batch-size"),
    save_every: int = typer.Option(TrainConfig.save_every, "--save-every", help="Also save last/ every N steps (for --resume)"),
    eval_every: int = typer.Option(TrainConfig.eval_every, "--eval-every", help="Also evaluate on dev every N steps (metrics.jsonl "
                                   "'eval' records; what a sweep's pruner reads)"),
    log_to: str = typer.Option(None, "--log-to", help="Also log every metric to tensorboard, mlflow or both "
                               "(comma-separated; event files in the run folder, MLflow in ./mlruns)"),
    skip_nonfinite: bool = typer.Option(TrainConfig.skip_nonfinite, "--skip-nonfinite", help="Skip and count NaN/inf steps instead of stopping"),
    activation_checkpointing: bool = typer.Option(
        TrainConfig.activation_checkpointing, "--activation-checkpointing/--no-activation-checkpointing",
        help="Recompute the encoder's activations in the backward pass: the same run in a third to a half of the "
             "memory, for one more forward pass (large batches, --simcse); may change on --resume"),
    log_every: int = typer.Option(TrainConfig.log_every, "--log-every", help="Write metrics.jsonl (and refresh the progress) every N steps"),
    progress_every: float = typer.Option(TrainConfig.progress_every, "--progress-every", help="Seconds between progress lines when the "
                                                                         "output is not a terminal (nohup, CI, jobs)"),
    resume: Path = typer.Option(None, help="Continue the run in this folder exactly where its last/ checkpoint left off"),
    config: Path = typer.Option(None, "--config", help="A recipe file (TOML): every option above as a key, named as "
                                "its flag without the dashes; flags given on the command line win"),
):
    """Fine-tune the shared encoder and one head per task (default: SST, Quora, STS-B); writes runs/<name>/."""
    from mtcli.train import resume as resume_training
    from mtcli.train import train as run_training
    from mtcli.run.folder import CHANGEABLE_ON_RESUME
    from mtcli.train.config import parse_task_map

    encodings = parse_task_map(encoding, "--encoding", cast=str)

    options = dict(
        sampler=sampler, combine=combine, task_weights=parse_task_map(task_weights, "--task-weights"),
        upsample=parse_task_map(upsample, "--upsample", cast=int), phase=phase, pooling=pooling,
        tasks=str(tasks) if tasks else None, encodings=encodings, simcse=simcse, mnrl=mnrl,
        cosine_embedding=1.0 if cosine_embedding_loss else 0.0, cosine_margin=cosine_margin,
        teacher=[p.strip() for p in teacher.split(",")] if teacher is not None else [],
        teacher_annealing=teacher_annealing, teacher_temperature=teacher_temperature,
        distill_embeddings=distill_embeddings,
        pretrain_epochs=pretrain_epochs, epochs=epochs, batch_size=batch_size, slots=slots,
        group_by_length=group_by_length, lr=lr, head_lr=head_lr,
        weight_decay=weight_decay, warmup=warmup, clip=clip, dropout=dropout, max_steps=max_steps, limit=limit,
        train_fraction=train_fraction,
        model_dir=str(model_dir) if model_dir else None,
        data_dir=str(data_dir) if data_dir else None, out=str(out), name=name, seed=seed, device=device,
        eval_batch_size=eval_batch_size, save_every=save_every, eval_every=eval_every, skip_nonfinite=skip_nonfinite,
        activation_checkpointing=activation_checkpointing,
        log_to=[t.strip() for t in log_to.split(",") if t.strip()] if log_to else [],
        log_every=log_every, progress_every=progress_every,
    )
    if resume is not None:
        if config is not None:
            from mtcli.core.errors import UserError

            raise UserError(f"{config}: --resume continues a run with its own recipe; drop --config")
        _refuse_conflicts(ctx, resume, options)
        given = _given_fields(ctx)
        resume_training(resume, settings={k: options[k] for k in CHANGEABLE_ON_RESUME if k in given})
        return
    if config is not None:
        from mtcli.train.recipe import with_recipe

        run_training(with_recipe(config, options, _given_fields(ctx)))
        return
    run_training(TrainConfig(**options))


def _given_fields(ctx: typer.Context) -> set[str]:
    """The TrainConfig fields whose flags the command line gave (they win over a recipe's)."""
    return {field_of_flag(param) for param in ctx.params
            if (source := ctx.get_parameter_source(param)) is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")}


def _refuse_conflicts(ctx: typer.Context, run_dir: Path, options: dict) -> None:
    """A resumed run continues with the options it was started with: an option given
    with --resume must agree with the saved one, or it is an error naming it."""
    from mtcli.core.errors import UserError
    from mtcli.run.folder import CHANGEABLE_ON_RESUME, CONFIG, differences, read_config
    from mtcli.train.config import PATH_FIELDS, PATH_LIST_FIELDS, resolved_path

    saved = read_config(run_dir)
    if saved is None:
        return  # resume itself reports the missing or broken run folder
    options = {k: resolved_path(v) if k in PATH_FIELDS else [resolved_path(p) for p in v] if k in PATH_LIST_FIELDS
               else v for k, v in options.items()}
    given = {field_of_flag(param): param for param in ctx.params if param != "resume"
             and (source := ctx.get_parameter_source(param)) is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")}
    # how the run computes and saves may change on resume
    conflicts = [f"--{given[field].replace('_', '-')} {options[field]!r} (the run has {saved[field]!r})"
                 for field in differences(saved, options, let_go=CHANGEABLE_ON_RESUME, among=set(given) & set(saved))]
    if conflicts:
        raise UserError(f"{run_dir / CONFIG}: --resume continues the run with its saved options; "
                        f"{'; '.join(conflicts)}: drop {'it' if len(conflicts) == 1 else 'them'}, or start a new run")
