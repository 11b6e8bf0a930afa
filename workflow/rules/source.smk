# The source GAN: pretrained per seed on the source domain, installed from a shipped pretrained file per seed
# (source.checkpoints), or imported from a rosinality checkpoint.


if config["source"]["import_checkpoint"]:

    rule import_source:
        input:
            checkpoint=config["source"]["import_checkpoint"],
        output:
            final="results/source/seed{seed}/final.pt",
            samples=report(
                "results/source/seed{seed}/samples.png",
                caption="../report/source_samples.rst",
                category="Source",
            ),
        params:
            model=section("model"),
            out=lambda wc, output: Path(output.final).parent,
        log:
            "logs/import_source/seed{seed}.log",
        benchmark:
            "benchmarks/import_source/seed{seed}.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
        shell:
            "lfsgan import-source --config {CONFIG_FILE} --checkpoint {input.checkpoint} --out {params.out} > {log} 2>&1"

elif config["source"]["checkpoints"]:

    rule install_source:
        input:
            checkpoint=lambda wc: shipped_source(int(wc.seed))["path"],
        output:
            final="results/source/seed{seed}/final.pt",
            samples=report(
                "results/source/seed{seed}/samples.png",
                caption="../report/source_samples.rst",
                category="Source",
            ),
        params:
            model=section("model"),
            sha256=lambda wc: shipped_source(int(wc.seed))["sha256"],
            out=lambda wc, output: Path(output.final).parent,
        log:
            "logs/install_source/seed{seed}.log",
        benchmark:
            "benchmarks/install_source/seed{seed}.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
        shell:
            "lfsgan install-source --config {CONFIG_FILE} --seed {wildcards.seed} --checkpoint {input.checkpoint} --out {params.out} > {log} 2>&1"

else:

    rule pretrain_source:
        input:
            data=f"results/data/{config['source']['domain']}/images.pt",
            start=lambda wc: [e["path"] for e in config["source"]["continue_from"] if e["seed"] == int(wc.seed)],
        output:
            final="results/source/seed{seed}/final.pt",
            samples=report(
                "results/source/seed{seed}/samples.png",
                caption="../report/source_samples.rst",
                category="Source",
            ),
            losses="results/source/seed{seed}/losses.csv",
        params:
            model=section("model"),
            train=section("source", "train"),
            start=lambda wc: json.dumps([e for e in config["source"]["continue_from"] if e["seed"] == int(wc.seed)]),
            data_dir=lambda wc, input: Path(input.data).parent,
            out=lambda wc, output: Path(output.final).parent,
        log:
            "logs/pretrain_source/seed{seed}.log",
        benchmark:
            "benchmarks/pretrain_source/seed{seed}.tsv"
        threads: data_parallel(config["source"]["train"])[0]  # one CPU per process
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["train_runtime"],
            **launch_resources(config["source"]["train"]),
        shell:
            launcher(config["source"]["train"]) + "lfsgan pretrain --config {CONFIG_FILE} --seed {wildcards.seed} --data {params.data_dir} --out {params.out} > {log} 2>&1"
