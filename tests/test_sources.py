import pytest

from dnalm.sources import metagenome_options, parse_source


def test_kinds():
    assert parse_source("genomes/x.fa.gz").kind == "local"
    assert parse_source("simulated:virus?length=1000&seed=2").kind == "simulated"
    assert parse_source("simulated:metagenome?seed=3&contigs=5").kind == "metagenome"


@pytest.mark.parametrize(
    "source", ["https://example.org/x.fa.gz", "ftp://h/x.fa", "ncbi:NC_045512.2"]
)
def test_download_sources_fail_clearly(source):
    with pytest.raises(ValueError, match="needs a download"):
        parse_source(source, "genomes.tsv, genome 'x'")


def test_bad_simulated_source_names_the_sheet_row():
    with pytest.raises(ValueError, match="genomes.tsv, genome 'x'"):
        parse_source("simulated:plasmid", "genomes.tsv, genome 'x'")


def test_metagenome_options():
    assert (
        metagenome_options("simulated:metagenome?seed=3&virus_fraction=0.5")["virus_fraction"]
        == 0.5
    )
    assert metagenome_options("simulated:metagenome")["contigs"] == 40
    with pytest.raises(ValueError, match="unknown option 'colour'"):
        metagenome_options("simulated:metagenome?colour=3")
