"""Converse.js in Firefox, driven the way a person uses it: the login form, the cog of the control
box, the plugin's switch in Settings. Reads back what the browser holds (service worker
registrations, push subscriptions, the notifications a worker showed) from a page of the same
origin."""

import time
import urllib.parse

from marionette_driver.by import By
from marionette_driver.errors import MarionetteException

# The plugin's control (web/converse-web-push.js); the README names its label.
SWITCH = "#converse-web-push-switch"
LABEL = "Notify me of new messages when Converse is closed"
STATUS = ".converse-web-push__status"
QUESTION = ".converse-web-push__question"

# Every service worker registration of the origin: its scope and script, its push subscription,
# and the notifications it shows.
REGISTRATIONS = """
const resolve = arguments[arguments.length - 1];
(async () => {
    const found = [];
    for (const registration of await navigator.serviceWorker.getRegistrations()) {
        const worker = registration.active || registration.waiting || registration.installing;
        const subscription = await registration.pushManager.getSubscription();
        const shown = await registration.getNotifications();
        found.push({
            scope: registration.scope,
            script: worker ? worker.scriptURL : null,
            endpoint: subscription ? subscription.endpoint : null,
            keys: subscription ? subscription.toJSON().keys : null,
            notifications: shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })),
        });
    }
    return found;
})().then(resolve, (error) => resolve({ error: String(error) }));
"""

CLOSE_NOTIFICATIONS = """
const resolve = arguments[arguments.length - 1];
(async () => {
    let closed = 0;
    for (const registration of await navigator.serviceWorker.getRegistrations()) {
        for (const notification of await registration.getNotifications()) {
            notification.close();
            closed += 1;
        }
    }
    return closed;
})().then(resolve, (error) => resolve({ error: String(error) }));
"""


class Converse:
    """Converse.js at `origin` (examples/converse.html, served by Prosody) in `browser`'s tab."""

    def __init__(self, browser, origin):
        self.browser = browser
        self.client = browser.firefox.client
        self.origin = origin

    def scope(self, jid):
        """Where the plugin registers the worker for an account (its defaults)."""
        return f"{self.origin}/web_push/account/{urllib.parse.quote(jid, safe='')}/"

    # -- a person at the keyboard ----------------------------------------------------------------

    def open(self):
        """A fresh load of the chat page. Notifications are allowed for the origin, as a click on
        the browser's "Allow" would (headless Firefox cannot show its prompt)."""
        self.client.navigate(self.origin + "/")
        self.client.set_permission({"name": "notifications"}, "granted")

    def login(self, jid, password, timeout=30):
        """Logs in through the form, unless Converse logs in by itself (a trusted device that
        logged in before); returns once the control box shows the account."""
        deadline = time.monotonic() + timeout
        submitted = False
        while not self.logged_in():
            if not submitted and self.visible("#converse-login-jid"):
                self.type_into("#converse-login-jid", jid)
                self.type_into("#converse-login-password", password)
                self.find('#converse-login button[type="submit"]').click()
                submitted = True
            self.check_time(deadline, "Converse did not log in")
            time.sleep(0.2)

    def logged_in(self):
        return self.visible("converse-controlbox-buttons .show-client-info")

    def open_settings(self, timeout=15):
        """The cog of the control box: Converse's Settings."""
        self.click("converse-controlbox-buttons .show-client-info", timeout)
        self.wait_visible(SWITCH, timeout)

    def close_settings(self):
        self.click("converse-user-settings-modal .modal-header .btn-close, "
                   "converse-user-settings-modal .modal-footer button", 10)
        deadline = time.monotonic() + 10
        while self.visible(SWITCH):
            self.check_time(deadline, "Settings did not close")
            time.sleep(0.1)

    def flip_switch(self, timeout=15):
        """Clicks the plugin's switch (its label, as a person would)."""
        label = self.find(f'label[for="{SWITCH[1:]}"]')
        assert label.text == LABEL, f"the switch is labelled {label.text!r}"
        self.click(f'label[for="{SWITCH[1:]}"]', timeout)

    def wait_state(self, state, timeout=30):
        """Waits until the switch says `state` ("on" or "off") and is no longer busy; returns the
        status line under it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                element = self.find(STATUS)
                if element.get_attribute("data-state") == state:
                    return element.text
                last = f"{element.get_attribute('data-state')}: {element.text}"
            except MarionetteException as error:
                last = str(error)
            self.check_time(deadline, f"the switch did not turn {state} (last: {last})")
            time.sleep(0.1)

    def switch_checked(self):
        return self.client.execute_script(
            f"return document.querySelector('{SWITCH}').checked;", sandbox=None)

    def close_tab(self):
        """Closes the tab (another one takes its place): the page is gone, its WebSocket closed
        without a goodbye, and its sessionStorage with it, so the next visit logs in afresh
        rather than resuming the hibernated session."""
        old = self.client.current_window_handle
        new = self.client.open(type="tab", focus=True)["handle"]
        self.client.switch_to_window(old)
        self.client.close()
        self.client.switch_to_window(new)

    # -- what the browser holds -------------------------------------------------------------------

    def registrations(self):
        """The origin's service worker registrations, read from a blank page of the origin (so no
        Converse runs while the test looks)."""
        self.client.navigate(self.origin + "/blank.html")
        found = self.client.execute_async_script(REGISTRATIONS, sandbox=None, script_timeout=15000)
        assert not (isinstance(found, dict) and "error" in found), found
        return found

    def registration(self, jid):
        """The registration of the account: there must be exactly one, at the plugin's scope."""
        found = self.registrations()
        assert [r["scope"] for r in found] == [self.scope(jid)], f"registrations: {found}"
        return found[0]

    def wait_notifications(self, jid, count=1, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            shown = self.registration(jid)["notifications"]
            if len(shown) >= count or time.monotonic() > deadline:
                return shown
            time.sleep(0.2)

    def close_notifications(self):
        self.client.navigate(self.origin + "/blank.html")
        self.client.execute_async_script(CLOSE_NOTIFICATIONS, sandbox=None, script_timeout=15000)

    def stored_choice(self, jid):
        """What the plugin remembers for the account in this browser (localStorage)."""
        return self.client.execute_script(
            "return JSON.parse(localStorage.getItem(arguments[0]));",
            script_args=(f"converse-web-push:{jid}",), sandbox=None)

    # -- elements -----------------------------------------------------------------------------

    def find(self, selector):
        return self.client.find_element(By.CSS_SELECTOR, selector)

    def visible(self, selector):
        try:
            return any(e.is_displayed() for e in self.client.find_elements(By.CSS_SELECTOR, selector))
        except MarionetteException:
            return False

    def wait_visible(self, selector, timeout=15):
        deadline = time.monotonic() + timeout
        while not self.visible(selector):
            self.check_time(deadline, f"{selector} did not appear")
            time.sleep(0.1)

    def click(self, selector, timeout=15):
        """Clicks the first visible match, retrying while a modal is still fading in."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                for element in self.client.find_elements(By.CSS_SELECTOR, selector):
                    if element.is_displayed():
                        element.click()
                        return
                problem = "not visible"
            except MarionetteException as error:
                problem = str(error).splitlines()[0]
            self.check_time(deadline, f"cannot click {selector}: {problem}")
            time.sleep(0.2)

    def type_into(self, selector, text):
        element = self.find(selector)
        element.clear()
        element.send_keys(text)

    def check_time(self, deadline, what):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}\n--- Firefox log (tail) ---\n{self.browser.firefox.log_tail(30)}")
