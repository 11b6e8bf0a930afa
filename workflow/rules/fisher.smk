# Diagonal empirical Fisher of the source generator (EWC's importance weights; a per-layer analysis).


rule fisher:
    input:
        source=source_checkpoint(),
    output:
        fisher="results/fisher/fisher.pt",
        layers="results/fisher/layers.csv",
        plot=report(
            "results/fisher/layers.png", caption="../report/fisher.rst", category="Fisher information"
        ),
    params:
        fisher=section("fisher"),
        out=lambda wc, output: Path(output.fisher).parent,
    log:
        "logs/fisher/fisher.log",
    benchmark:
        "benchmarks/fisher/fisher.tsv"
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=GPU,
    shell:
        "lfsgan fisher --config {CONFIG_FILE} --source {input.source} --out {params.out} > {log} 2>&1"
