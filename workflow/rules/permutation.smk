# Weight matching between independently pretrained sources, linear-mode-connectivity curves, and
# merges of N sources (naive, MergeMany, STE search), planned only for permutation.merge / .ste.


rule match_permutation:
    input:
        a="results/source/seed{a}/final.pt",
        b="results/source/seed{b}/final.pt",
    output:
        permuted="results/permutation/{a}_{b}/permuted.pt",
        summary="results/permutation/{a}_{b}/match.json",
        svd="results/permutation/{a}_{b}/svd.csv",
        r_gamma="results/permutation/{a}_{b}/r_gamma.csv",
        plot=report(
            "results/permutation/{a}_{b}/svd.png",
            caption="../report/svd.rst",
            category="Weight matching",
        ),
    params:
        matching=lambda wc: json.dumps(
            {k: config["permutation"][k] for k in ("max_iter", "seed", "top_k", "gammas")}, sort_keys=True
        ),
        out=lambda wc, output: Path(output.permuted).parent,
    log:
        "logs/match_permutation/{a}_{b}.log",
    benchmark:
        "benchmarks/match_permutation/{a}_{b}.tsv"
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
    shell:
        "lfsgan match --config {CONFIG_FILE} --a {input.a} --b {input.b} --out {params.out} > {log} 2>&1"


rule lmc_curve:
    input:
        a="results/source/seed{a}/final.pt",
        b="results/source/seed{b}/final.pt",
        permuted="results/permutation/{a}_{b}/permuted.pt",
        data=f"results/data/{config['source']['domain']}/images.pt",
        extractor=_extractor_input,
    output:
        curve="results/lmc/{a}_{b}/lmc.csv",
        summary="results/lmc/{a}_{b}/lmc.json",
        plot=report(
            "results/lmc/{a}_{b}/lmc.png", caption="../report/lmc.rst", category="Weight matching"
        ),
    params:
        lmc=lambda wc: json.dumps(
            {
                "permutation": {k: config["permutation"][k] for k in ("lambdas", "n_samples", "seed")},
                "fid": config["evaluation"]["fid"],
            },
            sort_keys=True,
        ),
        data_dir=lambda wc, input: Path(input.data).parent,
        extractor=lambda wc, input: f"--extractor {input.extractor[0]}" if input.extractor else "",
        out=lambda wc, output: Path(output.curve).parent,
    log:
        "logs/lmc_curve/{a}_{b}.log",
    benchmark:
        "benchmarks/lmc_curve/{a}_{b}.tsv"
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=GPU,
    shell:
        "lfsgan lmc --config {CONFIG_FILE} --a {input.a} --b {input.b} --permuted {input.permuted} --data {params.data_dir}"
        " {params.extractor} --cache results/eval/.cache --out {params.out} > {log} 2>&1"


rule ste_search:
    input:
        sources=merge_sources,
    output:
        perms="results/ste/{seeds}/ste.pt",
        summary="results/ste/{seeds}/ste.json",
    params:
        ste=lambda wc: json.dumps(
            {"ste": config["permutation"]["ste"], **{k: config["permutation"][k] for k in ("max_iter", "seed")}},
            sort_keys=True,
        ),
        out=lambda wc, output: Path(output.perms).parent,
    log:
        "logs/ste_search/{seeds}.log",
    benchmark:
        "benchmarks/ste_search/{seeds}.tsv"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=GPU,
    shell:
        "lfsgan ste --config {CONFIG_FILE} --sources {input.sources} --out {params.out} > {log} 2>&1"


rule merge_sources:
    input:
        sources=merge_sources,
        ste=_ste_input,
        data=f"results/data/{config['source']['domain']}/images.pt",
        extractor=_extractor_input,
    output:
        merged="results/merge/{seeds}/merged.pt",
        summary="results/merge/{seeds}/merge.json",
        r_gamma="results/merge/{seeds}/r_gamma.csv",
        plot=report(
            "results/merge/{seeds}/r_gamma.png", caption="../report/r_gamma.rst", category="Weight matching"
        ),
    params:
        merge=lambda wc: json.dumps(
            {
                "permutation": {k: config["permutation"][k] for k in ("n_samples", "seed", "max_iter", "gammas")},
                "fid": config["evaluation"]["fid"],
            },
            sort_keys=True,
        ),
        data_dir=lambda wc, input: Path(input.data).parent,
        extractor=lambda wc, input: f"--extractor {input.extractor[0]}" if input.extractor else "",
        ste=lambda wc, input: f"--ste {input.ste[0]}" if input.ste else "",
        out=lambda wc, output: Path(output.merged).parent,
    log:
        "logs/merge_sources/{seeds}.log",
    benchmark:
        "benchmarks/merge_sources/{seeds}.tsv"
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=GPU,
    shell:
        "lfsgan merge --config {CONFIG_FILE} --sources {input.sources} {params.ste} --data {params.data_dir}"
        " {params.extractor} --cache results/eval/.cache --out {params.out} > {log} 2>&1"
