% rebase('base', title='Log in')
<h1>Log in</h1>
<form method="post">
  <input type="hidden" name="csrf" value="{{csrf}}">
  <label for="email">Email</label>
  <input type="email" id="email" name="email" autocomplete="username" required>
  <label for="password">Password</label>
  <input type="password" id="password" name="password" autocomplete="current-password" required>
  <button type="submit">Log in</button>
</form>
<p><a href="/forgot">Forgot password?</a></p>
