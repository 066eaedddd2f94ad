from __future__ import annotations

import factory

from apps.accounts.models import User

DEFAULT_PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    display_name = factory.Sequence(lambda n: f"User {n}")
    email_verified = True
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


TASKS_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "done": {"type": "boolean"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 100},
        "due": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "properties": {"color": {"type": "string"}}},
    },
    "required": ["title"],
}


class CollectionFactory(factory.Factory):
    """A content collection, created through the service (caches and index states follow)."""

    class Meta:
        model = dict

    name = factory.Sequence(lambda n: f"things{n}")
    schema = factory.LazyFunction(lambda: dict(TASKS_SCHEMA))
    indexes = factory.LazyFunction(lambda: ["priority"])
    default_acl = factory.LazyFunction(dict)
    create_permission = "authenticated"
    public_read = False

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from apps.content.services.collections import collection_save

        collection, _ = collection_save(definition=kwargs)
        return collection
