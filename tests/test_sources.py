import pytest

from dnalm.sources import AcquireSettings, metagenome_options, parse_source, ucsc_files


def test_kinds():
    assert parse_source("genomes/x.fa.gz").kind == "local"
    assert parse_source("simulated:virus?length=1000&seed=2").kind == "simulated"
    assert parse_source("simulated:metagenome?seed=3&contigs=5").kind == "metagenome"


@pytest.mark.parametrize(
    ("source", "kind", "args"),
    [
        ("https://example.org/x.fa.gz", "url", ("https://example.org/x.fa.gz",)),
        ("ftp://ftp.ensembl.org/pub/x.fa.gz", "url", ("ftp://ftp.ensembl.org/pub/x.fa.gz",)),
        ("ncbi:NC_045512.2", "ncbi", ("NC_045512.2",)),
        (
            "ncbi:NC_045512.2, MN908947,NZ_CP012345.1",
            "ncbi",
            ("NC_045512.2", "MN908947", "NZ_CP012345.1"),
        ),
        ("assembly:GCF_000005845.2", "assembly", ("GCF_000005845.2",)),
        ("assembly:GCA_000001405", "assembly", ("GCA_000001405",)),
        ("refseq:viral", "refseq", ("viral",)),
        ("ucsc:hg38", "ucsc", ("hg38",)),
        ("ucsc:hg38:chr21,chr22", "ucsc", ("hg38", "chr21", "chr22")),
        ("ncbi:NC_003070.9:1-304276,NC_000932.1", "ncbi", ("NC_003070.9:1-304276", "NC_000932.1")),
    ],
)
def test_download_kinds_parse_without_network(source, kind, args):
    parsed = parse_source(source)
    assert (parsed.kind, parsed.args, parsed.is_download) == (kind, args, True)
    assert parsed.mirror == ""


@pytest.mark.parametrize(
    ("source", "kind", "mirror"),
    [
        (
            "ncbi:NC_000913.3?mirror=Ecoli_K12_MG1655_NC_000913.3.fna.gz",
            "ncbi",
            "Ecoli_K12_MG1655_NC_000913.3.fna.gz",
        ),
        ("ucsc:hg38:chr2?mirror=genomes/chr2.fa.gz", "ucsc", "genomes/chr2.fa.gz"),
        ("assembly:GCF_000005845.2?mirror=ecoli.fna", "assembly", "ecoli.fna"),
        ("https://example.org/x.fa.gz?mirror=y", "url", ""),  # a URL's query is the server's
    ],
)
def test_a_download_names_its_mirror_file(source, kind, mirror):
    parsed = parse_source(source)
    assert (parsed.kind, parsed.mirror, parsed.value) == (kind, mirror, source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("s3://bucket/x.fa", "unsupported URL scheme 's3'"),
        ("https://example.org", "needs a host and a file path"),
        ("ncbi:", "no accession"),
        ("ncbi:NC_045512.2,not-an-acc", "'not-an-acc' is not a nucleotide accession"),
        ("ncbi:NC_045512.2,NC_045512.2", "listed twice"),
        ("assembly:GCF_12345", "not an assembly accession"),
        ("refseq:bacteria", "only refseq:viral"),
        ("ucsc:hg38:chr1,chr1", "listed twice"),
        ("ucsc:hg 38", "ucsc:<assembly>"),
        ("ncbi:NC_003070.9:300-200", "a region is ACC:START-STOP"),
        ("ncbi:NC_003070.9:0-200", "1-based"),
        ("ncbi:NC_003070.9:1-2:3", "a region is ACC:START-STOP"),
        ("ncbi:NC_003070.9?mirror=", "?mirror=<file name>"),
        ("ncbi:NC_003070.9?checksum=1", "the only option"),
    ],
)
def test_bad_download_sources_fail_clearly(source, message):
    with pytest.raises(ValueError, match="genomes.tsv, genome 'x'") as info:
        parse_source(source, "genomes.tsv, genome 'x'")
    assert message in str(info.value)


def test_bad_simulated_source_names_the_sheet_row():
    with pytest.raises(ValueError, match="genomes.tsv, genome 'x'"):
        parse_source("simulated:plasmid", "genomes.tsv, genome 'x'")


def test_ucsc_files():
    base = "https://hgdownload.soe.ucsc.edu/goldenPath"
    assert ucsc_files("hg38", ()) == [f"{base}/hg38/bigZips/hg38.fa.gz"]
    assert ucsc_files("hg38", ("chr2",), "http://mirror/gp/") == [
        "http://mirror/gp/hg38/chromosomes/chr2.fa.gz"
    ]


def test_settings_take_the_api_key_from_the_environment_only():
    settings = AcquireSettings.from_config(
        {"soft_mask": "keep", "retries": 2, "ncbi_api_key": "from-config"},
        environ={"NCBI_API_KEY": "env-key", "NCBI_EMAIL": "me@example.org"},
    )
    assert settings.retries == 2 and settings.ncbi_api_key == "env-key"
    assert settings.ncbi_email == "me@example.org"
    assert "env-key" not in repr(settings)
    assert AcquireSettings.from_config({"ncbi_email": "a@b.c"}, environ={}).ncbi_email == "a@b.c"
    assert AcquireSettings.from_config({"mirror": None}, environ={}).mirror == ""
    assert AcquireSettings.from_config({"mirror": "../m"}, environ={}).mirror == "../m"


def test_metagenome_options():
    assert (
        metagenome_options("simulated:metagenome?seed=3&virus_fraction=0.5")["virus_fraction"]
        == 0.5
    )
    assert metagenome_options("simulated:metagenome")["contigs"] == 40
    with pytest.raises(ValueError, match="unknown option 'colour'"):
        metagenome_options("simulated:metagenome?colour=3")
