import pytest

pytestmark = pytest.mark.django_db


def test_project_create_and_list(client_for, user):
    client = client_for(user)
    created = client.post("/api/v1/projects/", {"name": "Orsta"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["role"] == "owner"
    listed = client.get("/api/v1/projects/").json()
    assert [p["name"] for p in listed["results"]] == ["Orsta"]


def test_unauthenticated_is_401_with_message(api_client):
    response = api_client.get("/api/v1/projects/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_schema_and_docs_answer(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
