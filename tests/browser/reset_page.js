/*
 * The self-service page in headless Chromium, as a person uses it: type
 * the login, ask for an email code, type a wrong code and then the right
 * one (read from the SMTP sink's record), watch the password rules as
 * the password is typed, set it, and see the done step. Also checks what
 * the page promises: labels on every field, focus on each step's
 * heading, messages in a live region, the MSP's name only after the code,
 * no request to any other origin and no Content-Security-Policy report.
 *
 * Driven by tests/integration/test_selfservice_browser.py, which starts
 * vouchd, the Samba DC and the sinks, and passes (environment):
 *   VOUCH_URL           base URL of vouchd
 *   VOUCH_LOGIN         the account's login
 *   VOUCH_EMAIL         its email address
 *   VOUCH_MAIL_RECORD   the SMTP sink's ndjson record
 *   VOUCH_NEW_PASSWORD  the password to set
 *   VOUCH_MSP_NAME      the name the page must show once verified
 *   VOUCH_ARTIFACTS     a directory for a screenshot when a step fails
 * Prints one line "ok" and exits 0, or prints the failure and exits 1.
 */
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const env = (name) => {
	const v = process.env[name];
	if (!v) {
		throw new Error(name + " is not set");
	}
	return v;
};

const BASE = env("VOUCH_URL");
const LOGIN = env("VOUCH_LOGIN");
const EMAIL = env("VOUCH_EMAIL");
const RECORD = env("VOUCH_MAIL_RECORD");
const PASSWORD = env("VOUCH_NEW_PASSWORD");
const MSP = env("VOUCH_MSP_NAME");
const ARTIFACTS = process.env.VOUCH_ARTIFACTS || "";

/* The flags this machine's Chromium needs (no sandbox as root, no
   background traffic to hosts the network does not reach). */
const CHROMIUM_ARGS = [
	"--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update",
	"--disable-sync",
];

function check(cond, what) {
	if (!cond) {
		throw new Error("check failed: " + what);
	}
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* The text of the mails the sink recorded for EMAIL, oldest first. */
function mails() {
	let text;
	try {
		text = fs.readFileSync(RECORD, "utf8");
	} catch (e) {
		return [];
	}
	const out = [];
	for (const line of text.split("\n")) {
		let m;
		try {
			m = JSON.parse(line);
		} catch (e) {
			continue;
		}
		if (m.ev === "message" && (m.to || []).includes(EMAIL)) {
			out.push(m.data);
		}
	}
	return out;
}

/* The code in the count-th mail to EMAIL, waiting for it to arrive. */
async function mailCode(count) {
	for (let i = 0; i < 150; i++) {
		const all = mails();
		if (all.length >= count) {
			const raw = all[count - 1];
			const body = raw.slice(raw.search(/\r?\n\r?\n/))
				.replace(/=\r?\n/g, "");
			const codes = body.match(/(?<!\d)\d{6,8}(?!\d)/g) || [];
			check(codes.length === 1, "one code in the mail: " + body);
			return codes[0];
		}
		await sleep(100);
	}
	throw new Error("no mail to " + EMAIL + " within 15 s");
}

/* The id of the focused element. */
async function focused(page) {
	return page.evaluate(() => document.activeElement &&
	    document.activeElement.id);
}

/* Every visible form field has a label a screen reader reads. */
async function checkLabels(page) {
	const unlabelled = await page.evaluate(() =>
		Array.from(document.querySelectorAll("input"))
			.filter((i) => i.offsetParent !== null)
			.filter((i) => i.labels.length === 0 &&
			    !i.getAttribute("aria-label"))
			.map((i) => i.id || i.name));
	check(unlabelled.length === 0, "fields without labels: " + unlabelled);
}

async function message(page) {
	return (await page.locator("#msg").textContent()).trim();
}

async function run(page, problems) {
	await page.goto(BASE + "/reset");
	check(await page.title() === "Reset your password",
	    "a neutral title before verification");
	check(!(await page.content()).includes(MSP),
	    "no MSP name before verification");
	check(await focused(page) === "login", "focus starts on the login");
	check(await page.getAttribute("#msg", "aria-live") !== null,
	    "messages are in a live region");
	await checkLabels(page);

	/* Step 1: the login. An empty one is refused on the page. */
	await page.getByRole("button", { name: "Continue" }).click();
	check((await message(page)).includes("Enter your login"),
	    "an empty login is explained");
	await page.getByLabel("Your login").fill(LOGIN);
	await page.getByLabel("Set a new password").check();
	await page.getByRole("button", { name: "Continue" }).click();
	await page.locator("#step-factor").waitFor({ state: "visible" });
	check(await focused(page) === "h-factor",
	    "focus moves to the factor step");
	await checkLabels(page);

	/* Step 2: an email code. */
	await page.getByRole("button", { name: "Email me a code" }).click();
	await page.locator("#step-code").waitFor({ state: "visible" });
	const code = await mailCode(1);
	check(await focused(page) === "code", "focus moves to the code");
	await checkLabels(page);

	/* A wrong code first: the live region says how many tries remain. */
	const wrong = code === "000000" ? "000001" : "000000";
	await page.getByLabel("Code", { exact: true }).fill(wrong);
	await page.getByRole("button", { name: "Check the code" }).click();
	await page.waitForFunction(() => document.getElementById("msg")
	    .textContent.includes("not right"));
	check(/left/.test(await message(page)), "the tries left are told");
	check(await page.getAttribute("#msg", "class") === "error",
	    "the wrong code is shown as an error");

	/* Step 3: the right code; the MSP's name shows. */
	await page.getByLabel("Code", { exact: true }).fill(code);
	await page.getByRole("button", { name: "Check the code" }).click();
	await page.locator("#step-password").waitFor({ state: "visible" });
	check(await focused(page) === "h-password",
	    "focus moves to the password step");
	check((await page.locator("#brand").textContent()) === MSP,
	    "the MSP's name shows once verified");
	check((await page.title()).startsWith(MSP), "the title names the MSP");
	await checkLabels(page);

	/* The rules follow the typing. */
	const rules = page.locator("#rules li.met");
	await page.getByLabel("New password", { exact: true }).fill("short");
	check(await rules.count() < 3, "a short password meets few rules");
	check(!(await page.locator("#rule-length").getAttribute("class")),
	    "the length rule is not met by a short password");
	await page.getByRole("button", { name: "Set the new password" })
	    .click();
	check((await message(page)).includes("does not meet"),
	    "an unmet rule stops the page");
	await page.getByLabel("New password", { exact: true }).fill(PASSWORD);
	check(await page.locator("#rule-confirm").getAttribute("class") !==
	    "met", "confirmation unmet before the second box");
	await page.getByLabel("The new password again").fill(PASSWORD);
	check(await rules.count() === 4, "every rule met");
	check((await page.locator("#rules-status").textContent())
	    .includes("4 of 4"), "the rules summary is announced");

	/* Step 4: set it. */
	await page.getByRole("button", { name: "Set the new password" })
	    .click();
	await page.locator("#step-done").waitFor({ state: "visible" });
	check(await focused(page) === "h-done", "focus moves to done");
	check((await page.locator("#done-text").textContent())
	    .includes("new password is set"), "the done step says so");
	check(await page.inputValue("#password") === "",
	    "the password box is cleared");
	const violations = await page.evaluate(() => window.cspViolations);
	check(violations.length === 0, "policy violations: " + violations);
	check(problems.length === 0, "console errors or policy reports: " +
	    problems.join("; "));
}

async function main() {
	const browser = await chromium.launch({
		executablePath: process.env.VOUCH_CHROMIUM || "/usr/bin/chromium",
		headless: true,
		args: CHROMIUM_ARGS,
	});
	const context = await browser.newContext();
	const page = await context.newPage();
	const problems = [];
	const origin = new URL(BASE).origin;

	/* Failed fetches (the wrong code's 422, the favicon's 404) are
	   logged as console errors too; they are expected. */
	page.on("console", (m) => {
		if (m.type() === "error" &&
		    !m.text().startsWith("Failed to load resource")) {
			problems.push(m.text());
		}
	});
	await page.addInitScript(() => {
		window.cspViolations = [];
		document.addEventListener("securitypolicyviolation", (e) => {
			window.cspViolations.push(e.violatedDirective + " " +
			    e.blockedURI);
		});
	});
	page.on("pageerror", (e) => problems.push(String(e)));
	page.on("request", (r) => {
		if (!r.url().startsWith(origin + "/")) {
			problems.push("request to another origin: " + r.url());
		}
	});
	page.setDefaultTimeout(15000);
	try {
		await run(page, problems);
		console.log("ok");
	} catch (e) {
		if (ARTIFACTS) {
			await page.screenshot({
				path: path.join(ARTIFACTS, "reset-page-failure.png"),
				fullPage: true,
			}).catch(() => {});
		}
		console.log("FAILED: " + (e && e.stack ? e.stack : e));
		console.log("page message: " +
		    await message(page).catch(() => "?"));
		process.exitCode = 1;
	} finally {
		await browser.close();
	}
}

main().catch((e) => {
	console.log("FAILED: " + e);
	process.exitCode = 1;
});
