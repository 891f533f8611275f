"""CLIPImageRetriever against real Chroma (embedded and HTTP) and the real demo model.

The retriever contract runs over the three kinds of collection it reads: (a) our ImageIndex,
(b) Chroma's native embedding function (`uris`, no documents), (c) LlamaIndex's
ChromaVectorStore. LlamaIndex's own MultiModalVectorIndexRetriever runs against the same
contract, with our embedding, as a reference.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.embeddings.clip_multimodal import CLIPMultiModalEmbedding
from llama_index.retrievers.clip_multimodal import CLIPImageRetriever
from llama_index.vector_stores.chroma import ChromaVectorStore
from llama_index_clip_contracts import MultiModalRetrieverContract

from clip_multimodal import ImageIndex
from clip_multimodal.access import AccessDeniedError, AccessPolicy
from clip_multimodal.datasets import digit_query
from clip_multimodal.errors import IncompatibleIndexError
from clip_multimodal.testing import FakeEncoder

K = 4
NOT_DIGITS = MetadataFilters(
    filters=[MetadataFilter(key="group", value="digits", operator=FilterOperator.NE)]
)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"  # unique on the shared server too


def _not_digit(metadata: dict[str, Any]) -> bool:
    return metadata.get("group") != "digits"


@pytest.fixture(scope="module")
def images(demo_images_dir: Path) -> list[Path]:
    return sorted(demo_images_dir.rglob("*.png"))


def _metadata(images: list[Path]) -> list[dict[str, Any]]:
    return [{"group": p.parent.name, "rank": i} for i, p in enumerate(images)]


# -- the three kinds of collection, built once per module and client kind ----------------


@pytest.fixture(scope="module")
def our_index(module_client: Any, demo_encoder: Any, images: list[Path]) -> ImageIndex:
    index = ImageIndex(demo_encoder, collection=unique_name("li-index"), client=module_client)
    report = index.add([str(p) for p in images], metadatas=_metadata(images))
    assert not report.failed and report.added == len(images)
    return index


@pytest.fixture(scope="module")
def native_collection(module_client: Any, demo_encoder: Any, images: list[Path]) -> Any:
    """Written by Chroma's native path: ids of our choosing, `uris`, no documents."""
    from clip_multimodal.chroma import CLIPEmbeddingFunction, URILoader

    collection = module_client.create_collection(
        unique_name("li-native"),
        embedding_function=CLIPEmbeddingFunction(encoder=demo_encoder),
        data_loader=URILoader(),
    )
    collection.add(
        ids=[f"photo-{i}" for i in range(len(images))],
        uris=[str(p) for p in images],
        metadatas=_metadata(images),
    )
    return collection


def _vector_store_collection(
    client: Any, encoder: Any, images: list[Path], space: str | None
) -> Any:
    """Written by MultiModalVectorStoreIndex through ChromaVectorStore."""
    config = {"hnsw": {"space": space}} if space else None
    collection = client.create_collection(unique_name("li-vs"), configuration=config)
    embed = CLIPMultiModalEmbedding(encoder=encoder)
    nodes = [
        ImageNode(image_path=str(p), metadata=m)
        for p, m in zip(images, _metadata(images), strict=True)
    ]
    MultiModalVectorStoreIndex(
        nodes=nodes,
        image_vector_store=ChromaVectorStore(chroma_collection=collection),
        embed_model=embed,
        image_embed_model=embed,
    )
    return collection


@pytest.fixture(scope="module")
def vs_collection(module_client: Any, demo_encoder: Any, images: list[Path]) -> Any:
    # No configuration: Chroma's default l2 space, what ChromaVectorStore.from_params makes.
    return _vector_store_collection(module_client, demo_encoder, images, None)


# -- the contract over each ----------------------------------------------------------------


class _Queries:
    @pytest.fixture
    def expected_k(self) -> int:
        return K

    @pytest.fixture
    def text_query(self) -> str:
        return digit_query("seven")

    @pytest.fixture
    def image_query(self, images: list[Path]) -> str:
        return str(next(p for p in images if p.name.startswith("giraffe")))


class TestOverImageIndex(_Queries, MultiModalRetrieverContract):
    @pytest.fixture
    def retriever(self, our_index: ImageIndex, demo_images_dir: Path) -> CLIPImageRetriever:
        access = AccessPolicy(roots=[demo_images_dir])
        return CLIPImageRetriever(our_index, image_similarity_top_k=K, image_access=access)

    @pytest.fixture
    def filtered(self, our_index: ImageIndex) -> tuple[CLIPImageRetriever, Any]:
        return CLIPImageRetriever(
            our_index, image_similarity_top_k=K, filters=NOT_DIGITS
        ), _not_digit


class TestOverNativeCollection(_Queries, MultiModalRetrieverContract):
    @pytest.fixture
    def retriever(
        self, native_collection: Any, demo_encoder: Any, demo_images_dir: Path
    ) -> CLIPImageRetriever:
        return CLIPImageRetriever.from_collection(
            native_collection,
            demo_encoder,
            image_similarity_top_k=K,
            image_access=AccessPolicy(roots=[demo_images_dir]),
        )

    @pytest.fixture
    def filtered(self, native_collection: Any, demo_encoder: Any) -> tuple[Any, Any]:
        retriever = CLIPImageRetriever.from_collection(
            native_collection, demo_encoder, image_similarity_top_k=K, filters=NOT_DIGITS
        )
        return retriever, _not_digit


class TestOverChromaVectorStore(_Queries, MultiModalRetrieverContract):
    @pytest.fixture
    def retriever(
        self, vs_collection: Any, demo_encoder: Any, demo_images_dir: Path
    ) -> CLIPImageRetriever:
        embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
        access = AccessPolicy(roots=[demo_images_dir])
        return CLIPImageRetriever.from_collection(
            vs_collection, embed, image_similarity_top_k=K, image_access=access
        )

    @pytest.fixture
    def filtered(self, vs_collection: Any, demo_encoder: Any) -> tuple[Any, Any]:
        retriever = CLIPImageRetriever.from_collection(
            vs_collection, demo_encoder, image_similarity_top_k=K, filters=NOT_DIGITS
        )
        return retriever, _not_digit


class TestLlamaIndexOwnRetriever(_Queries, MultiModalRetrieverContract):
    """LlamaIndex's MultiModalVectorIndexRetriever with our embedding, as a reference."""

    @pytest.fixture
    def index(
        self, module_client: Any, vs_collection: Any, demo_encoder: Any
    ) -> MultiModalVectorStoreIndex:
        embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
        texts = module_client.get_or_create_collection(f"{vs_collection.name}-text")
        return MultiModalVectorStoreIndex.from_vector_store(
            vector_store=ChromaVectorStore(chroma_collection=texts),
            image_vector_store=ChromaVectorStore(chroma_collection=vs_collection),
            embed_model=embed,
            image_embed_model=embed,
        )

    @pytest.fixture
    def retriever(self, index: MultiModalVectorStoreIndex) -> Any:
        return index.as_retriever(image_similarity_top_k=K)

    @pytest.fixture
    def filtered(self, index: MultiModalVectorStoreIndex) -> tuple[Any, Any]:
        return index.as_retriever(image_similarity_top_k=K, filters=NOT_DIGITS), _not_digit


# -- content: the right images come back ------------------------------------------------


def _names(hits: list[NodeWithScore]) -> list[str]:
    return [Path(str(h.node.image_path)).name for h in hits]  # type: ignore[attr-defined]


@pytest.fixture(params=["index", "native", "vector_store"])
def any_retriever(
    request: pytest.FixtureRequest, demo_encoder: Any, module_client: Any
) -> Callable[..., CLIPImageRetriever]:
    """Builds a retriever over each kind of collection (on each client), with the given options."""

    def build(**options: Any) -> CLIPImageRetriever:
        demo = request.getfixturevalue("demo_images_dir")
        options.setdefault("image_access", AccessPolicy(roots=[demo]))
        if request.param == "index":
            return CLIPImageRetriever(request.getfixturevalue("our_index"), **options)
        fixture = "native_collection" if request.param == "native" else "vs_collection"
        collection = request.getfixturevalue(fixture)
        return CLIPImageRetriever.from_collection(collection, demo_encoder, **options)

    return build


@pytest.mark.parametrize(
    ("name", "group"), [("seven", "digits"), ("zebra", "animals"), ("three", "digits")]
)
def test_text_finds_the_named_content(
    any_retriever: Callable[..., CLIPImageRetriever], name: str, group: str
) -> None:
    from clip_multimodal.datasets import animal_query

    query = digit_query(name) if group == "digits" else animal_query(name)
    hits = any_retriever(image_similarity_top_k=3).text_to_image_retrieve(query)
    assert _names(hits)[0].startswith(f"{name}-"), _names(hits)
    assert all(h.node.metadata["group"] == group for h in hits)


def test_image_query_finds_its_kind(
    any_retriever: Callable[..., CLIPImageRetriever], images: list[Path]
) -> None:
    zebra = next(p for p in images if p.name == "zebra-001.png")
    hits = any_retriever(image_similarity_top_k=3).image_to_image_retrieve(str(zebra))
    assert _names(hits)[0] == "zebra-001.png"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert all(h.node.metadata["group"] == "animals" for h in hits)


def test_image_query_accepts_images_in_memory(
    any_retriever: Callable[..., CLIPImageRetriever], images: list[Path]
) -> None:
    from io import BytesIO

    from PIL import Image

    giraffe = next(p for p in images if p.name.startswith("giraffe"))
    retriever = any_retriever(image_similarity_top_k=2)
    expected = _names(retriever.image_to_image_retrieve(str(giraffe)))
    for query in (giraffe.read_bytes(), BytesIO(giraffe.read_bytes()), Image.open(giraffe)):
        assert _names(retriever.image_to_image_retrieve(query)) == expected
    assert _names(retriever.image_to_image_retrieve(ImageNode(image_path=str(giraffe)))) == expected


def test_scores_are_cosine_similarity(
    any_retriever: Callable[..., CLIPImageRetriever], demo_encoder: Any, images: list[Path]
) -> None:
    """Whatever the collection's space (l2 for ChromaVectorStore's default), score = cosine."""
    query = digit_query("five")
    hits = any_retriever(image_similarity_top_k=5).text_to_image_retrieve(query)
    q = demo_encoder.embed_texts([query])[0]
    paths = [str(h.node.image_path) for h in hits]  # type: ignore[attr-defined]
    expected = demo_encoder.embed_images(paths) @ q
    np.testing.assert_allclose([h.score for h in hits], expected, atol=1e-4)


def test_nodes_carry_metadata_and_mime(any_retriever: Callable[..., CLIPImageRetriever]) -> None:
    hit = any_retriever(image_similarity_top_k=1).text_to_image_retrieve(digit_query("one"))[0]
    node = hit.node
    assert isinstance(node, ImageNode)
    assert node.metadata["group"] == "digits"
    assert isinstance(node.metadata["rank"], int)
    assert node.image_mimetype == "image/png"
    assert Path(str(node.image_path)).is_file()


# -- filters: every operator and condition, on real Chroma ------------------------------


def _f(key: str, op: FilterOperator, value: Any) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)


FILTER_CASES: list[tuple[str, MetadataFilters, Callable[[dict[str, Any]], bool]]] = [
    (
        "eq",
        MetadataFilters(filters=[_f("group", FilterOperator.EQ, "animals")]),
        lambda m: m["group"] == "animals",
    ),
    (
        "ne",
        MetadataFilters(filters=[_f("group", FilterOperator.NE, "digits")]),
        lambda m: m["group"] != "digits",
    ),
    ("gt", MetadataFilters(filters=[_f("rank", FilterOperator.GT, 30)]), lambda m: m["rank"] > 30),
    (
        "gte",
        MetadataFilters(filters=[_f("rank", FilterOperator.GTE, 40)]),
        lambda m: m["rank"] >= 40,
    ),
    ("lt", MetadataFilters(filters=[_f("rank", FilterOperator.LT, 10)]), lambda m: m["rank"] < 10),
    ("lte", MetadataFilters(filters=[_f("rank", FilterOperator.LTE, 3)]), lambda m: m["rank"] <= 3),
    (
        "in",
        MetadataFilters(filters=[_f("group", FilterOperator.IN, ["shapes", "animals"])]),
        lambda m: m["group"] in ("shapes", "animals"),
    ),
    (
        "nin",
        MetadataFilters(filters=[_f("group", FilterOperator.NIN, ["digits", "animals"])]),
        lambda m: m["group"] == "shapes",
    ),
    (
        "and",
        MetadataFilters(
            filters=[_f("group", FilterOperator.EQ, "digits"), _f("rank", FilterOperator.GTE, 20)],
            condition=FilterCondition.AND,
        ),
        lambda m: m["group"] == "digits" and m["rank"] >= 20,
    ),
    (
        "or",
        MetadataFilters(
            filters=[_f("group", FilterOperator.EQ, "shapes"), _f("rank", FilterOperator.GT, 44)],
            condition=FilterCondition.OR,
        ),
        lambda m: m["group"] == "shapes" or m["rank"] > 44,
    ),
    (
        "not",
        MetadataFilters(
            filters=[
                _f("group", FilterOperator.EQ, "digits"),
                _f("group", FilterOperator.EQ, "shapes"),
            ],
            condition=FilterCondition.NOT,
        ),
        lambda m: m["group"] == "animals",
    ),
    (
        "nested",
        MetadataFilters(
            filters=[
                _f("group", FilterOperator.NE, "shapes"),
                MetadataFilters(
                    filters=[_f("rank", FilterOperator.LT, 20), _f("rank", FilterOperator.GT, 40)],
                    condition=FilterCondition.OR,
                ),
            ],
        ),
        lambda m: m["group"] != "shapes" and (m["rank"] < 20 or m["rank"] > 40),
    ),
]


@pytest.mark.parametrize(
    ("case", "filters", "predicate"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_filters_on_real_chroma(
    any_retriever: Callable[..., CLIPImageRetriever],
    images: list[Path],
    case: str,
    filters: MetadataFilters,
    predicate: Callable[[dict[str, Any]], bool],
) -> None:
    """The filtered search returns exactly the matching images (k = all of them)."""
    matching = sum(predicate(m) for m in _metadata(images))
    assert 0 < matching < len(images), case
    retriever = any_retriever(image_similarity_top_k=len(images), filters=filters)
    hits = retriever.text_to_image_retrieve("anything")
    assert len(hits) == matching
    assert all(predicate(h.node.metadata) for h in hits)


def test_filters_changed_after_construction_apply(
    any_retriever: Callable[..., CLIPImageRetriever], images: list[Path]
) -> None:
    retriever = any_retriever(image_similarity_top_k=len(images))
    assert len(retriever.text_to_image_retrieve("anything")) == len(images)
    retriever.filters = MetadataFilters(filters=[_f("group", FilterOperator.EQ, "digits")])
    hits = retriever.text_to_image_retrieve("anything")
    assert 0 < len(hits) < len(images)
    assert all(h.node.metadata["group"] == "digits" for h in hits)


def test_unsupported_operator_fails_at_construction(our_index: ImageIndex) -> None:
    filters = MetadataFilters(filters=[_f("group", FilterOperator.TEXT_MATCH, "dig")])
    with pytest.raises(ValueError, match="text_match"):
        CLIPImageRetriever(our_index, filters=filters)


# -- the crash cases and guards ------------------------------------------------------------


def test_native_collection_without_metadata(
    module_client: Any, demo_encoder: Any, images: list[Path]
) -> None:
    """The `TextNode text None` case: uris only, metadata None, documents None."""
    from clip_multimodal.chroma import CLIPEmbeddingFunction, URILoader

    collection = module_client.create_collection(
        unique_name("li-bare"),
        embedding_function=CLIPEmbeddingFunction(encoder=demo_encoder),
        data_loader=URILoader(),
    )
    digits = [p for p in images if p.parent.name == "digits"][:5]
    collection.add(ids=[f"x{i}" for i in range(5)], uris=[str(p) for p in digits])
    access = AccessPolicy(roots=[digits[2].parent])
    retriever = CLIPImageRetriever.from_collection(collection, demo_encoder, image_access=access)
    hits = retriever.image_to_image_retrieve(str(digits[2]))
    assert hits[0].node.node_id == "x2"
    assert isinstance(hits[0].node, ImageNode)
    assert hits[0].node.image_path == str(digits[2])
    assert hits[0].node.text == ""
    assert hits[0].node.metadata == {}


def test_urls_become_image_url(module_client: Any, demo_encoder: Any) -> None:
    """An http(s) URI becomes image_url (no fetch happens at retrieval)."""
    collection = module_client.create_collection(
        unique_name("li-urls"), configuration={"hnsw": {"space": "cosine"}}
    )
    vector = demo_encoder.embed_texts(["a cat"])[0].tolist()
    collection.add(ids=["u"], embeddings=[vector], uris=["https://example.com/cat.jpg"])
    hit = CLIPImageRetriever.from_collection(collection, demo_encoder).text_to_image_retrieve(
        "a cat"
    )[0]
    assert hit.node.image_url == "https://example.com/cat.jpg"  # type: ignore[attr-defined]
    assert hit.node.image_path is None  # type: ignore[attr-defined]
    assert hit.score == pytest.approx(1.0, abs=1e-4)


def test_another_models_collection_is_refused(vs_collection: Any) -> None:
    with pytest.raises(IncompatibleIndexError, match="dim"):
        CLIPImageRetriever.from_collection(vs_collection, FakeEncoder(dim=7))


def test_an_image_index_of_another_model_is_refused(our_index: ImageIndex) -> None:
    dim = our_index.encoder.dim
    with pytest.raises(IncompatibleIndexError, match="built with model"):
        CLIPImageRetriever.from_collection(our_index.collection, FakeEncoder(dim=dim))


def test_a_text_collection_is_named_as_such(module_client: Any, demo_encoder: Any) -> None:
    collection = module_client.create_collection(unique_name("li-text"))
    embed = CLIPMultiModalEmbedding(encoder=demo_encoder)
    store = ChromaVectorStore(chroma_collection=collection)
    node = TextNode(text="a handwritten seven", embedding=embed.get_text_embedding("seven"))
    store.add([node])
    with pytest.raises(IncompatibleIndexError, match=r"no images.*TextNode"):
        CLIPImageRetriever.from_collection(collection, embed)


def test_constructor_guards(our_index: ImageIndex, native_collection: Any) -> None:
    with pytest.raises(ValueError, match="one of them"):
        CLIPImageRetriever()
    with pytest.raises(ValueError, match="one of them"):
        CLIPImageRetriever(our_index, collection=native_collection)
    with pytest.raises(ValueError, match="embed_model"):
        CLIPImageRetriever(collection=native_collection)
    with pytest.raises(ValueError, match="at least 1"):
        CLIPImageRetriever(our_index, image_similarity_top_k=0)
    with pytest.raises(ValueError, match="leave embed_model out"):
        CLIPImageRetriever(our_index, embed_model=FakeEncoder())
    with pytest.raises(ValueError, match="needs an image"):
        CLIPImageRetriever(our_index).image_to_image_retrieve(QueryBundle("text"))


def test_text_retriever_is_composed(our_index: ImageIndex) -> None:
    """text_retrieve and retrieve use the optional text retriever, then the images."""
    from llama_index.core.retrievers import BaseRetriever

    class Notes(BaseRetriever):
        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            return [
                NodeWithScore(node=TextNode(text=f"note on {query_bundle.query_str}"), score=0.5)
            ]

    retriever = CLIPImageRetriever(our_index, image_similarity_top_k=2, text_retriever=Notes())
    texts = retriever.text_retrieve("sevens")
    assert [h.node.get_content() for h in texts] == ["note on sevens"]
    both = retriever.retrieve("sevens")
    assert [type(h.node).__name__ for h in both] == ["TextNode", "ImageNode", "ImageNode"]
    assert CLIPImageRetriever(our_index).text_retrieve("sevens") == []


# -- collections that also hold text records -----------------------------------------------

NOTES = [digit_query("seven"), "a handwritten seven, scanned", "notes about the animal pictures"]


@pytest.fixture(scope="module")
def clip_chroma(module_client: Any, demo_encoder: Any, images: list[Path]) -> Any:
    """A collection written by LangChain's CLIPChroma: add_images, then add_texts."""
    from langchain_clip_multimodal import CLIPChroma, CLIPEmbeddings

    store = CLIPChroma(
        unique_name("li-lc-mixed"),
        CLIPEmbeddings(encoder=demo_encoder),
        client=module_client,
    )
    store.add_images([str(p) for p in images], _metadata(images))
    store.add_texts(NOTES, [{"group": "notes"}] * len(NOTES), ids=["n0", "n1", "n2"])
    return store


@pytest.mark.parametrize("opened", ["index", "read_only"])
def test_text_records_are_not_image_hits(
    clip_chroma: Any, demo_encoder: Any, images: list[Path], opened: str
) -> None:
    """An image retriever returns images only: CLIPChroma's text records (which the query
    matches best) are left out of text-to-image and image-to-image retrieval."""
    if opened == "index":
        retriever = CLIPImageRetriever(clip_chroma.index, image_similarity_top_k=3)
    else:
        retriever = CLIPImageRetriever.from_collection(
            clip_chroma.index.collection, demo_encoder, image_similarity_top_k=3
        )
    hits = retriever.text_to_image_retrieve(NOTES[0])
    assert len(hits) == 3
    assert all(isinstance(h.node, ImageNode) and h.node.image_path for h in hits)
    assert _names(hits)[0].startswith("seven-")
    retriever.image_similarity_top_k = len(images) + len(NOTES)
    everything = retriever.text_to_image_retrieve(NOTES[0])
    assert len(everything) == len(images)
    assert {h.node.metadata["group"] for h in everything} == {"shapes", "digits", "animals"}
    seven = next(p for p in images if p.name.startswith("seven-"))
    assert len(retriever.image_to_image_retrieve(seven.read_bytes())) == len(images)


def test_text_records_excluded_under_user_filters(clip_chroma: Any, images: list[Path]) -> None:
    """The exclusion combines with the user's filters (here one that text records match)."""
    retriever = CLIPImageRetriever(
        clip_chroma.index, image_similarity_top_k=len(images), filters=NOT_DIGITS
    )
    hits = retriever.text_to_image_retrieve(NOTES[0])
    assert len(hits) == sum(_not_digit(m) for m in _metadata(images))
    assert all(isinstance(h.node, ImageNode) and h.node.image_path for h in hits)


# -- reach: image queries by path or URL are opt-in ---------------------------------------


def test_by_default_no_path_or_url_is_read(
    our_index: ImageIndex, images: list[Path], demo_encoder: Any
) -> None:
    retriever = CLIPImageRetriever(our_index, image_similarity_top_k=1)
    giraffe = next(p for p in images if p.name.startswith("giraffe"))
    for query in (
        str(giraffe),
        QueryBundle(query_str="", image_path=str(giraffe)),
        ImageNode(image_path=str(giraffe)),
        ImageNode(image_url="http://169.254.169.254/latest/meta-data/"),
        ImageNode(image_url="file:///etc/passwd"),
        "/etc/passwd",
    ):
        with pytest.raises(AccessDeniedError):
            retriever.image_to_image_retrieve(query)
    # The image itself, in memory, reaches nothing and works.
    hits = retriever.image_to_image_retrieve(giraffe.read_bytes())
    assert _names(hits) == [giraffe.name]


async def test_image_queries_reach_only_what_the_policy_allows(
    our_index: ImageIndex, images: list[Path], tmp_path: Path
) -> None:
    giraffe = next(p for p in images if p.name.startswith("giraffe"))
    outside = tmp_path / "giraffe.png"
    outside.write_bytes(giraffe.read_bytes())
    access = AccessPolicy(roots=[giraffe.parent], url_hosts=["images.example.com"])
    retriever = CLIPImageRetriever(our_index, image_similarity_top_k=1, image_access=access)
    assert _names(retriever.image_to_image_retrieve(str(giraffe))) == [giraffe.name]
    for query in (str(outside), "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(AccessDeniedError):
            retriever.image_to_image_retrieve(query)
        with pytest.raises(AccessDeniedError):
            await retriever.aimage_to_image_retrieve(query)
