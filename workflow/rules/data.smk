# Images (a folder, a zip or a built-in demo domain) -> uint8 tensors + manifest.


rule prepare_data:
    input:
        images=domain_images,
    output:
        images="results/data/{domain}/images.pt",
        manifest="results/data/{domain}/manifest.json",
    params:
        spec=lambda wc: json.dumps(config["data"]["domains"][wc.domain], sort_keys=True),
        settings=lambda wc: json.dumps(  # what preparation reads: not the domains, nor which shots replicates draw
            {k: v for k, v in config["data"].items() if k not in ("domains", "shots_per_replicate")}, sort_keys=True
        ),
        out=lambda wc, output: Path(output.images).parent,
    log:
        "logs/prepare_data/{domain}.log",
    benchmark:
        "benchmarks/prepare_data/{domain}.tsv"
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    shell:
        "lfsgan prepare --config {CONFIG_FILE} --domain {wildcards.domain} --out {params.out} > {log} 2>&1"
