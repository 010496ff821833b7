"""Rooms made by users, in a real browser: a public room anyone finds, and a private room that
only the people invited see."""

import re

from playwright.sync_api import expect

from tests.support.browser import logged_in_page, open_room, send


def test_a_user_opens_a_private_room_for_the_people_they_invite(browser, server):
    alice = logged_in_page(browser, server, "alice")
    alice.get_by_role("link", name="New room").click()
    expect(alice).to_have_url(server.base_url + "/rooms/new/")
    alice.get_by_label("Name").fill("Launch plans")
    alice.get_by_label("Topic").fill("Only for the launch crew")
    alice.get_by_label("Private").check()
    alice.get_by_label("Invite").fill("bob, nobody")
    alice.get_by_role("button", name="Create room").click()
    expect(alice.get_by_text("No such user: nobody.")).to_be_visible()  # the form says what is wrong
    alice.get_by_label("Invite").fill("bob")
    alice.get_by_role("button", name="Create room").click()
    expect(alice).to_have_url(server.base_url + "/rooms/launch-plans/")
    expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    expect(alice.locator("#room-name")).to_contain_text("Launch plans")
    send(alice, "Welcome aboard")

    bob = logged_in_page(browser, server, "bob")
    expect(bob.locator("#room-list [data-slug=launch-plans]")).to_be_visible()
    open_room(bob, server, "launch-plans")
    expect(bob.locator("#messages .message[data-author=alice] .body")).to_have_text("Welcome aboard")

    carol = logged_in_page(browser, server, "carol")
    expect(carol.locator("#room-list [data-slug=launch-plans]")).to_have_count(0)
    response = carol.goto(server.base_url + "/rooms/launch-plans/")
    assert response.status == 403
    expect(carol.get_by_role("heading", level=1)).to_have_text("You can’t open this page")


def test_a_public_room_is_there_for_everyone(browser, server):
    carol = logged_in_page(browser, server, "carol")
    carol.get_by_role("link", name="New room").click()
    carol.get_by_label("Name").fill("Board games")
    carol.get_by_role("button", name="Create room").click()
    expect(carol).to_have_url(server.base_url + "/rooms/board-games/")
    expect(carol.locator("#status")).to_have_attribute("data-state", "live")

    bob = logged_in_page(browser, server, "bob")
    bob.get_by_role("link", name=re.compile("Board games")).click()
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    expect(bob.locator("#presence li[data-username=carol]")).to_have_count(1)
    send(bob, "Chess tonight?")
    expect(carol.locator("#messages .message[data-author=bob] .body")).to_have_text("Chess tonight?")
