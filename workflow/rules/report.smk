# Tables, plots, forgetting matrices, sample grids: what a researcher reads.


rule report:
    input:
        unpack(_report_inputs),
    output:
        summary=report("results/report/summary.csv", caption="../report/summary.rst", category="Results"),
        markdown="results/report/summary.md",
        claims=report("results/report/claims.csv", caption="../report/claims.rst", category="Claims"),
        forgetting=report(
            "results/report/forgetting.png", caption="../report/forgetting.rst", category="Results"
        ),
        along=report(
            "results/report/metrics_along_tasks.png", caption="../report/along.rst", category="Results"
        ),
        samples=report("results/report/samples.png", caption="../report/samples.rst", category="Samples"),
        quality=report("results/report/quality.csv", caption="../report/quality.rst", category="Results"),
        quality_plot=report("results/report/quality.png", caption="../report/quality.rst", category="Results"),
        same_latents="results/report/same_latents.json",
        same_latent_grids=[
            report(f"results/report/same_latents_{t}.png", caption="../report/same_latents.rst", category="Samples")
            for t in TASKS
        ],
    params:
        out=lambda wc, output: Path(output.summary).parent,
        lmc=lambda wc, input: f"--lmc {' '.join(input.lmc)}" if input.lmc else "",
        match=lambda wc, input: f"--match {' '.join(input.match)}" if input.match else "",
        merge=lambda wc, input: f"--merge {' '.join(input.merge)}" if input.merge else "",
        quality=lambda wc, input: f"--quality {' '.join(input.quality)}" if input.quality else "",
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    shell:
        "lfsgan report --config {CONFIG_FILE} --metrics {input.metrics} --tasks {input.tasks} --grids {input.grids}"
        " {params.lmc} {params.match} {params.merge} {params.quality} --fisher {input.fisher} --source {input.source}"
        " --same-latents {input.same_latents} --cache results/eval/.cache --out {params.out} > {log} 2>&1"
