from control.selectors.projects import projects_for_user


def projects(request) -> dict:
    """The project switcher of the base layout."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_projects": []}
    return {"nav_projects": list(projects_for_user(user=user)[:50])}
