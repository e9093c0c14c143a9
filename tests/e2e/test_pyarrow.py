"""pyarrow's S3FileSystem (AWS SDK for C++) against the real hub: a partitioned Parquet dataset."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from conftest import REGION


@pytest.fixture
def s3fs(valley):
    return fs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{valley.port}",
        scheme="http",
        access_key=valley.access_key,
        secret_key=valley.secret_key,
        region=REGION,
        connect_timeout=5,
        request_timeout=60,
    )


def make_table(n: int = 50_000) -> pa.Table:
    ids = pa.array(range(n), type=pa.int64())
    return pa.table({
        "id": ids,
        "country": pa.array([["ch", "de", "fr", "it"][i % 4] for i in range(n)]),
        "year": pa.array([2020 + (i % 3) for i in range(n)], type=pa.int32()),
        "value": pc.multiply(pc.cast(ids, pa.float64()), 0.5),
        "label": pa.array([f"row-{i}-ü" for i in range(n)]),
    })


def test_partitioned_parquet_dataset_round_trip(s3fs, s3, bucket):
    table = make_table()
    root = f"{bucket}/warehouse/measurements"
    ds.write_dataset(
        table, root, filesystem=s3fs, format="parquet",
        partitioning=["country", "year"], partitioning_flavor="hive",
        max_rows_per_file=5_000, max_rows_per_group=2_500,
    )
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="warehouse/")
            for o in p.get("Contents", [])]
    parquet = [k for k in keys if k.endswith(".parquet")]
    # 4 countries x 3 years, split further by max_rows_per_file.
    partitions = {tuple(k.split("/")[2:4]) for k in parquet}
    assert len(partitions) == 12, sorted(partitions)
    assert all(k.split("/")[2].startswith("country=") and k.split("/")[3].startswith("year=") for k in parquet)

    dataset = ds.dataset(root, filesystem=s3fs, format="parquet", partitioning="hive")
    back = dataset.to_table()
    assert back.num_rows == table.num_rows
    back = back.select(table.column_names).sort_by("id")
    back = back.cast(table.schema)
    assert back.equals(table)

    # Predicate pushdown by partition reads only the matching files.
    sub = dataset.to_table(filter=(ds.field("country") == "de") & (ds.field("year") == 2021))
    expected = table.filter(pc.and_(pc.equal(table["country"], "de"), pc.equal(table["year"], 2021)))
    assert sub.num_rows == expected.num_rows > 0
    assert sorted(sub["id"].to_pylist()) == sorted(expected["id"].to_pylist())


def test_single_parquet_file_and_ranged_reads(s3fs, bucket):
    table = make_table(200_000)
    path = f"{bucket}/single/data.parquet"
    pq.write_table(table, path, filesystem=s3fs, row_group_size=20_000)
    info = s3fs.get_file_info(path)
    assert info.type == fs.FileType.File and info.size > 0
    meta = pq.read_metadata(path, filesystem=s3fs)
    assert meta.num_rows == 200_000 and meta.num_row_groups == 10
    # Column projection and one row group: ranged GETs.
    pf = pq.ParquetFile(s3fs.open_input_file(path))
    rg = pf.read_row_group(3, columns=["id", "label"])
    assert rg["id"].to_pylist() == list(range(60_000, 80_000))
    assert pq.read_table(path, filesystem=s3fs).equals(table)


def test_filesystem_operations(s3fs, bucket):
    with s3fs.open_output_stream(f"{bucket}/dir/a.txt") as f:
        f.write(b"alpha")
    with s3fs.open_output_stream(f"{bucket}/dir/sub/b.txt") as f:
        f.write(b"beta" * 1000)
    infos = s3fs.get_file_info(fs.FileSelector(f"{bucket}/dir", recursive=True))
    files = sorted((i.path, i.size) for i in infos if i.type == fs.FileType.File)
    assert files == [(f"{bucket}/dir/a.txt", 5), (f"{bucket}/dir/sub/b.txt", 4000)]
    s3fs.copy_file(f"{bucket}/dir/a.txt", f"{bucket}/copy.txt")
    with s3fs.open_input_stream(f"{bucket}/copy.txt") as f:
        assert f.read() == b"alpha"
    s3fs.delete_dir_contents(f"{bucket}/dir")
    infos = s3fs.get_file_info(fs.FileSelector(f"{bucket}", recursive=True))
    assert [i.path for i in infos if i.type == fs.FileType.File] == [f"{bucket}/copy.txt"]
